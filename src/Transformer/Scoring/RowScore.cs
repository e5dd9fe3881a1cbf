namespace Microsoft.ML.Qwen3Moe.Scoring;

/// <summary>The scores of one row.</summary>
/// <param name="LogProbabilities">log p(token t | tokens before t) for t = 1..TokenCount-1.</param>
/// <param name="TokenCount">Tokens scored (after truncation).</param>
/// <param name="MeanLogProbability">Mean of <paramref name="LogProbabilities"/>; NaN when it is empty.</param>
/// <param name="Perplexity">exp(−<paramref name="MeanLogProbability"/>); NaN when there is nothing to predict.</param>
internal sealed record RowScore(float[] LogProbabilities, int TokenCount, float MeanLogProbability, float Perplexity)
{
    /// <summary>Scores from per-token log-probabilities (the mean is accumulated in double).</summary>
    public static RowScore From(float[] logProbabilities, int tokenCount)
    {
        if (logProbabilities.Length == 0) return new RowScore(logProbabilities, tokenCount, float.NaN, float.NaN);
        double mean = logProbabilities.Sum(v => (double)v) / logProbabilities.Length;
        return new RowScore(logProbabilities, tokenCount, (float)mean, (float)Math.Exp(-mean));
    }
}
