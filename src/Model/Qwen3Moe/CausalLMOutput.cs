using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>Outputs of one forward pass; dispose it (or let a dispose scope take the tensors) when done.</summary>
public sealed class CausalLMOutput : IDisposable
{
    /// <summary>[B,S,H]: after the final norm on the last stage, else the last local layer's output.</summary>
    public required Tensor HiddenStates { get; init; }

    /// <summary>[B,S,V] logits when requested on the last stage.</summary>
    public Tensor? Logits { get; init; }

    /// <summary>
    /// [B,S] float32 per-token negative log-likelihood (positive; 0 where the label is <see cref="CausalLMLoss.IgnoreIndex"/>)
    /// when labels were given on the last stage: the seed's <c>logps</c> output, which holds the NLL, not log-probabilities.
    /// </summary>
    public Tensor? TokenNll { get; init; }

    /// <summary>Router logits [B*S,E] of each local sparse layer, in layer order.</summary>
    public required IReadOnlyList<Tensor> RouterLogits { get; init; }

    /// <summary>When requested: the embedding output (first stage) then each local layer's output, before the final norm.</summary>
    public IReadOnlyList<Tensor>? AllHiddenStates { get; init; }

    /// <summary>
    /// [entries, B, H] in snapshot mode Mean: the masked sequence means of the embedding output (entry 0) and of every layer
    /// output so far (entry j+1 = layer j, before the final norm), including earlier stages' entries; null in mode No.
    /// </summary>
    public Tensor? HiddenStatesSnapshot { get; init; }

    /// <inheritdoc />
    public void Dispose()
    {
        HiddenStates.Dispose();
        Logits?.Dispose();
        TokenNll?.Dispose();
        HiddenStatesSnapshot?.Dispose();
        foreach (var t in RouterLogits) t.Dispose();
        foreach (var t in AllHiddenStates ?? Array.Empty<Tensor>()) t.Dispose();
    }
}
