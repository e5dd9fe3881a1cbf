using Microsoft.ML.Data;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Adds the four score columns to a <see cref="SchemaShape"/> with their real types. <c>SchemaShape.Column</c>'s
/// constructor is internal to ML.NET, so the columns are obtained from a throw-away <c>CustomMapping</c> estimator
/// whose output type has exactly those columns (renamed to the configured names), the workaround ML.NET's
/// maintainers point to for external estimators.
/// </summary>
internal static class ScoreSchemaShape
{
    /// <summary>No input columns.</summary>
    private sealed class NoInput
    {
    }

    /// <summary>The output columns, with the types <see cref="Scoring.ScoreColumns"/> declares.</summary>
    private sealed class Scores
    {
        [VectorType]
        public float[] LogProbabilities = Array.Empty<float>();

        public int TokenCount { get; set; }

        public float MeanLogProbability { get; set; }

        public float Perplexity { get; set; }
    }

    /// <summary>The input shape plus the score columns named by <paramref name="options"/> (replacing same-named inputs).</summary>
    public static SchemaShape Append(MLContext context, SchemaShape input, Qwen3MoeScoringOptions options)
    {
        var definition = SchemaDefinition.Create(typeof(Scores));
        definition[nameof(Scores.LogProbabilities)].ColumnName = options.LogProbabilitiesColumnName;
        definition[nameof(Scores.TokenCount)].ColumnName = options.TokenCountColumnName;
        definition[nameof(Scores.MeanLogProbability)].ColumnName = options.MeanLogProbabilityColumnName;
        definition[nameof(Scores.Perplexity)].ColumnName = options.PerplexityColumnName;
        var shaper = context.Transforms.CustomMapping<NoInput, Scores>((_, _) => { }, contractName: null, outputSchemaDefinition: definition);
        return shaper.GetOutputSchema(input);
    }
}
