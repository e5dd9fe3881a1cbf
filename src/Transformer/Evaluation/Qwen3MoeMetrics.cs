namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Language-model metrics of a scored data view (<c>mlContext.Qwen3Moe().Evaluate(scored)</c>): every predicted token
/// weighs the same, whatever row it is in.
/// </summary>
public sealed class Qwen3MoeMetrics
{
    internal Qwen3MoeMetrics(long rows, long tokens, double totalNll, long bytes)
    {
        Rows = rows;
        Tokens = tokens;
        TotalNegativeLogLikelihood = totalNll;
        MeanNegativeLogLikelihood = tokens > 0 ? totalNll / tokens : double.NaN;
        Perplexity = Math.Exp(MeanNegativeLogLikelihood);
        Bytes = bytes;
        BitsPerByte = bytes > 0 ? totalNll / (Math.Log(2) * bytes) : double.NaN;
    }

    /// <summary>Rows read (rows with fewer than 2 tokens count here but predict no token).</summary>
    public long Rows { get; }

    /// <summary>Predicted tokens: the total length of the log-probabilities column (every token of a row after its first, up to the scoring length).</summary>
    public long Tokens { get; }

    /// <summary>Σ −log p over the predicted tokens (natural log, nats).</summary>
    public double TotalNegativeLogLikelihood { get; }

    /// <summary>Token-weighted mean negative log-likelihood in nats per token: <see cref="TotalNegativeLogLikelihood"/> / <see cref="Tokens"/>; NaN with no
    /// token.</summary>
    public double MeanNegativeLogLikelihood { get; }

    /// <summary>Corpus perplexity: exp(<see cref="MeanNegativeLogLikelihood"/>) (not the mean of the rows' perplexities); NaN with no token.</summary>
    public double Perplexity { get; }

    /// <summary>
    /// UTF-8 bytes of the text of the rows that have at least one predicted token; 0 when no text column was given.
    /// </summary>
    public long Bytes { get; }

    /// <summary>
    /// <see cref="TotalNegativeLogLikelihood"/> / (ln 2 × <see cref="Bytes"/>): bits per UTF-8 byte of text, comparable
    /// across tokenizers. Exact definition: the numerator counts the predicted tokens only (a row's first token is
    /// given, not predicted), the denominator every byte of those rows' text. It is meaningful only when no row was cut
    /// by <c>MaxSequenceLength</c> (the bytes of a cut tail are counted, their cost is not). NaN without a text column.
    /// </summary>
    public double BitsPerByte { get; }

    /// <inheritdoc />
    public override string ToString() => FormattableString.Invariant(
        $"rows {Rows}, tokens {Tokens}, mean NLL {MeanNegativeLogLikelihood:F4} nats/token, perplexity {Perplexity:F3}, bits per byte {BitsPerByte:F4}");
}
