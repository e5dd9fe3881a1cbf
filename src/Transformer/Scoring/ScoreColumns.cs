using Microsoft.ML.Data;

namespace Microsoft.ML.Qwen3Moe.Scoring;

/// <summary>The four output columns (names from the options, types fixed) and their getters over a row's <see cref="RowScore"/>.</summary>
internal sealed class ScoreColumns
{
    public const int Count = 4;

    private static readonly DataViewType[] Types =
    {
        new VectorDataViewType(NumberDataViewType.Single), NumberDataViewType.Int32, NumberDataViewType.Single, NumberDataViewType.Single,
    };

    private readonly string[] _names;

    public ScoreColumns(Qwen3MoeScoringOptions options)
    {
        _names = new[] { options.LogProbabilitiesColumnName, options.TokenCountColumnName, options.MeanLogProbabilityColumnName, options.PerplexityColumnName };
    }

    /// <summary>The input columns (all of them, hidden ones included, at their indices) followed by the four outputs.</summary>
    public DataViewSchema OutputSchema(DataViewSchema input)
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(input);
        for (int i = 0; i < Count; i++) builder.AddColumn(_names[i], Types[i]);
        return builder.ToSchema();
    }

    /// <summary>Getter of output <paramref name="which"/> (0..3) reading the current row's scores from <paramref name="current"/>.</summary>
    public static ValueGetter<TValue> Getter<TValue>(int which, Func<RowScore> current)
    {
        Delegate getter = which switch
        {
            0 => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
            {
                var values = current().LogProbabilities;
                var editor = VBufferEditor.Create(ref dst, values.Length);
                values.CopyTo(editor.Values);
                dst = editor.Commit();
            }),
            1 => (ValueGetter<int>)((ref int dst) => dst = current().TokenCount),
            2 => (ValueGetter<float>)((ref float dst) => dst = current().MeanLogProbability),
            3 => (ValueGetter<float>)((ref float dst) => dst = current().Perplexity),
            _ => throw new ArgumentOutOfRangeException(nameof(which)),
        };
        return getter as ValueGetter<TValue>
            ?? throw new InvalidOperationException($"Invalid TValue in GetGetter: '{typeof(TValue)}', expected type: " +
                $"'{getter.GetType().GetGenericArguments()[0]}'.");
    }
}
