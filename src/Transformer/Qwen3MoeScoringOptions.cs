using Microsoft.ML.Qwen3Moe.Configuration;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// What a <see cref="Qwen3MoeTransformer"/> reads and writes when it scores: the input column (text, or token ids) and
/// the four output columns, plus the scoring batch. The fine-tuning options derive from this class, so a fitted model
/// scores with the settings it was trained with.
/// </summary>
public class Qwen3MoeScoringOptions
{
    /// <summary>Input column of text (scalar <c>String</c>) to score or to train on. Default "Text".</summary>
    public string TextColumnName = "Text";

    /// <summary>
    /// Optional input column of pre-tokenized text: a vector of <c>Int32</c> or <c>Int64</c> token ids. When set, it is
    /// read instead of <see cref="TextColumnName"/> and no tokenizer is needed. Default null (use the text column).
    /// </summary>
    public string? TokenIdsColumnName;

    /// <summary>
    /// Output column: the log-probability (natural log) of each token given the tokens before it, a variable-length
    /// vector of <c>Single</c> with one value per token after the first. Default "LogProbabilities".
    /// </summary>
    public string LogProbabilitiesColumnName = "LogProbabilities";

    /// <summary>Output column: the number of tokens scored in the row (after truncation to min(<see cref="MaxSequenceLength"/>,
    /// <c>max_position_embeddings</c>)), <c>Int32</c>. Default "TokenCount".</summary>
    public string TokenCountColumnName = "TokenCount";

    /// <summary>
    /// Output column: the mean of <see cref="LogProbabilitiesColumnName"/>, <c>Single</c>; NaN for rows of fewer than 2
    /// tokens. Default "MeanLogProbability".
    /// </summary>
    public string MeanLogProbabilityColumnName = "MeanLogProbability";

    /// <summary>Output column: exp(−mean log-probability), <c>Single</c>; NaN for rows of fewer than 2 tokens. Default "Perplexity".</summary>
    public string PerplexityColumnName = "Perplexity";

    /// <summary>
    /// Most tokens per row. Longer rows are cut to their first min(<see cref="MaxSequenceLength"/>, the model's
    /// <c>max_position_embeddings</c>) tokens when scored (a text is tokenized only that far). Default 512.
    /// </summary>
    public int MaxSequenceLength = 512;

    /// <summary>Largest <see cref="ScoringBatchSize"/> accepted: 65,536.</summary>
    public const int MaxScoringBatchSize = 1 << 16;

    /// <summary>Rows scored together in one forward pass by <c>Transform</c> (rows are right-padded and masked). Default 8; at most <see
    /// cref="MaxScoringBatchSize"/>.</summary>
    public int ScoringBatchSize = 8;

    /// <summary>Weights and activations precision. Default <see cref="Qwen3MoePrecision.Float32"/>.</summary>
    public Qwen3MoePrecision Precision = Qwen3MoePrecision.Float32;

    /// <summary>
    /// Every batch (training, validation and scoring) is right-padded to a multiple of this many tokens, never beyond the most
    /// tokens per row: rows of varying lengths then fall into a few batch shapes. The padding is masked, so losses, scores and
    /// MoE statistics are those of the unpadded rows; it costs the compute of the padded positions. 1 pads only to the
    /// longest row of the batch. Default 1.
    /// </summary>
    public int PadToMultipleOf = 1;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid field.</summary>
    internal virtual void Validate()
    {
        Require.NonEmpty(TextColumnName, nameof(TextColumnName));
        if (TokenIdsColumnName is not null) Require.NonEmpty(TokenIdsColumnName, nameof(TokenIdsColumnName));
        Require.NonEmpty(LogProbabilitiesColumnName, nameof(LogProbabilitiesColumnName));
        Require.NonEmpty(TokenCountColumnName, nameof(TokenCountColumnName));
        Require.NonEmpty(MeanLogProbabilityColumnName, nameof(MeanLogProbabilityColumnName));
        Require.NonEmpty(PerplexityColumnName, nameof(PerplexityColumnName));
        var outputs = new[] { LogProbabilitiesColumnName, TokenCountColumnName, MeanLogProbabilityColumnName, PerplexityColumnName };
        Require.That(outputs.Distinct(StringComparer.Ordinal).Count() == outputs.Length, "output column names", string.Join(", ", outputs),
            "must be distinct.");
        Require.That(MaxSequenceLength >= 2, nameof(MaxSequenceLength), MaxSequenceLength, "must be at least 2 (one token to predict from, one to predict).");
        Require.That(MaxSequenceLength <= Configuration.ConfigLimits.MaxPositions, nameof(MaxSequenceLength), MaxSequenceLength,
            $"must be at most {Configuration.ConfigLimits.MaxPositions:N0} (the most positions any model may have).");
        Require.That(ScoringBatchSize > 0, nameof(ScoringBatchSize), ScoringBatchSize, "must be positive.");
        Require.That(ScoringBatchSize <= MaxScoringBatchSize, nameof(ScoringBatchSize), ScoringBatchSize, $"must be at most {MaxScoringBatchSize:N0}.");
        Require.That(Enum.IsDefined(Precision), nameof(Precision), Precision, "unknown precision.");
        Require.That(PadToMultipleOf is >= 1 and <= Configuration.ConfigLimits.MaxPositions, nameof(PadToMultipleOf), PadToMultipleOf,
            $"must be in [1, {Configuration.ConfigLimits.MaxPositions:N0}] (1: pad to the longest row only).");
    }

    /// <summary>A copy of the scoring fields only (so a transformer never shares a mutable options object with the caller).</summary>
    internal Qwen3MoeScoringOptions CloneScoring() => new()
    {
        TextColumnName = TextColumnName,
        TokenIdsColumnName = TokenIdsColumnName,
        LogProbabilitiesColumnName = LogProbabilitiesColumnName,
        TokenCountColumnName = TokenCountColumnName,
        MeanLogProbabilityColumnName = MeanLogProbabilityColumnName,
        PerplexityColumnName = PerplexityColumnName,
        MaxSequenceLength = MaxSequenceLength,
        ScoringBatchSize = ScoringBatchSize,
        Precision = Precision,
        PadToMultipleOf = PadToMultipleOf,
    };
}
