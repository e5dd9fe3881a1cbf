using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Collects hidden states during one forward pass (the seed's hidden-state aggregators): with
/// <see cref="HiddenStatesAggregationMode.Mean"/>, each added [B,S,H] tensor is reduced at once to its masked mean over
/// the sequence, [B,H]; <see cref="Pack"/> stacks them after the snapshot received from the previous stage.
/// </summary>
internal sealed class HiddenStatesAggregator
{
    private readonly Tensor? _mask;
    private readonly List<Tensor> _means = new();

    private HiddenStatesAggregator(Tensor? mask) => _mask = mask;

    /// <summary>Creates the aggregator of <paramref name="mode"/>.</summary>
    /// <param name="mode">What to collect.</param>
    /// <param name="mask">[B,S] weights of the tokens in the mean (1 = include); required by <see cref="HiddenStatesAggregationMode.Mean"/>.</param>
    /// <exception cref="ArgumentException">Mean mode without a mask.</exception>
    public static HiddenStatesAggregator Create(HiddenStatesAggregationMode mode, Tensor? mask) => mode switch
    {
        HiddenStatesAggregationMode.No => new HiddenStatesAggregator(null),
        HiddenStatesAggregationMode.Mean =>
            new HiddenStatesAggregator(mask
            ?? throw new ArgumentException("Hidden-state snapshots in Mean mode need HiddenStatesAggregationMask.", nameof(mask))),
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown hidden-state aggregation mode."),
    };

    /// <summary>Whether anything is collected.</summary>
    public bool IsActive => _mask is not null;

    /// <summary>Reduces <paramref name="h"/> [B,S,H] to its masked mean [B,H] and keeps it.</summary>
    public void Add(Tensor h)
    {
        if (_mask is null) return;
        using var scope = NewDisposeScope();
        var m = _mask.to(ScalarType.Float32).to(h.device).unsqueeze(-1);                        // [B,S,1]
        var mean = (h.to(ScalarType.Float32) * m).sum(dim: 1) / m.sum(dim: 1);                              // [B,H]
        _means.Add(mean.to(h.dtype).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// [previous + added, B, H]: <paramref name="previous"/> (the snapshot of earlier stages, may be null) followed by the
    /// means added since the last pack; null in mode No or when there is nothing at all. Clears the collected means.
    /// </summary>
    public Tensor? Pack(Tensor? previous)
    {
        if (_mask is null) return null;
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        if (previous is not null) parts.Add(previous);
        if (_means.Count > 0) parts.Add(stack(_means, 0));
        _means.Clear();
        var packed = parts.Count switch { 0 => null, 1 => parts[0].alias(), _ => cat(parts, 0) };
        return packed?.MoveToOuterDisposeScope();
    }
}
