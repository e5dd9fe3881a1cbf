namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// How the MoE routers spread the scored tokens over the experts: for each sparse decoder layer, how many top-k choices
/// each expert received (padding excluded). A balanced router gives every expert about
/// <see cref="TokensRouted"/> × k / E choices.
/// </summary>
public sealed class MoeRoutingStatistics
{
    internal MoeRoutingStatistics(IReadOnlyList<int> sparseLayers, IReadOnlyList<IReadOnlyList<long>> tokensPerExpert, long tokensRouted)
    {
        SparseLayers = sparseLayers;
        TokensPerExpert = tokensPerExpert;
        TokensRouted = tokensRouted;
    }

    /// <summary>An empty record (nothing scored yet).</summary>
    internal static MoeRoutingStatistics Empty { get; } = new(Array.Empty<int>(), Array.Empty<IReadOnlyList<long>>(), 0);

    /// <summary>Global indices of the sparse (routed) decoder layers, in order.</summary>
    public IReadOnlyList<int> SparseLayers { get; }

    /// <summary><c>TokensPerExpert[i][e]</c>: top-k choices of expert e in sparse layer <c>SparseLayers[i]</c>.</summary>
    public IReadOnlyList<IReadOnlyList<long>> TokensPerExpert { get; }

    /// <summary>Real (non-padding) tokens that went through the routers.</summary>
    public long TokensRouted { get; }

    /// <summary>
    /// Load imbalance of sparse layer position <paramref name="i"/>: the busiest expert's count over the mean count (1
    /// is perfectly balanced).
    /// </summary>
    public double MaxOverMeanLoad(int i)
    {
        var counts = TokensPerExpert[i];
        double mean = counts.Average(c => (double)c);
        return mean == 0 ? 0 : counts.Max() / mean;
    }
}
