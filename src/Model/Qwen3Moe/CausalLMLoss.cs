using static TorchSharp.torch;

using Microsoft.ML.Qwen3Moe.Kernels;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// The loss of a causal-LM batch, as HF defines it, built from the per-token losses the model returns: what the executors
/// differentiate and the trainer reports.
/// </summary>
public static class CausalLMLoss
{
    /// <summary>Label value that marks a position without a target (-100, as PyTorch's and HF's); the one such constant of the solution.</summary>
    public const long IgnoreIndex = -100;

    /// <summary>
    /// Next-token labels aligned with the inputs: <c>labels[b,t] = ids[b,t+1]</c>, -100 at the last position and wherever the
    /// next token is padding (<paramref name="attentionMask"/> 0).
    /// </summary>
    public static Tensor ShiftLabels(Tensor inputIds, Tensor? attentionMask = null) // [B,S] -> [B,S]
    {
        using var scope = NewDisposeScope();
        long s = inputIds.shape[1];
        var next = inputIds.narrow(1, 1, s - 1);
        if (attentionMask is not null) next = next.masked_fill(attentionMask.narrow(1, 1, s - 1).eq(Scalars.Zero), Scalars.IgnoreIndex);
        var pad = full(new[] { inputIds.shape[0], 1L }, Scalars.IgnoreIndex, dtype: ScalarType.Int64, device: inputIds.device);
        return cat(new[] { next.to(ScalarType.Int64), pad }, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Mean of the per-token losses over the positions that have a target (d9d: sum / number of target tokens).</summary>
    public static Tensor Mean(Tensor tokenNll, Tensor labels) // [B,S] float32 -> scalar
    {
        using var scope = NewDisposeScope();
        var count = labels.ne(Scalars.IgnoreIndex).sum().clamp_min(Scalars.One).to(ScalarType.Float32);
        return (tokenNll.sum() / count).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// What a training pass differentiates: <c>(Σ NLL) / targetTokens + auxCoefficient · aux</c>, with
    /// <paramref name="targetTokens"/> the target tokens of the whole optimizer step (so accumulated batches and
    /// micro-batches weigh every token the same); the auxiliary term only when <paramref name="aux"/> is given and the
    /// coefficient is not 0.
    /// </summary>
    public static Tensor Objective(Tensor nllSum, long targetTokens, Tensor? aux, double auxCoefficient) // scalars -> scalar
    {
        var loss = nllSum.Over(Math.Max(targetTokens, 1));
        return aux is null || auxCoefficient == 0 ? loss : loss.Plus(aux.Times(auxCoefficient));
    }

    /// <summary>HF's load-balancing loss over the router logits of the sparse layers (float32 scalar; 0 when there are none).</summary>
    public static Tensor AuxiliaryLoss(IReadOnlyList<Tensor> routerLogits, int topK, Tensor? attentionMask = null) =>
        routerLogits.Count == 0 ? zeros(Array.Empty<long>(), dtype: ScalarType.Float32) : LoadBalancingLoss.Compute(routerLogits, topK, attentionMask);
}
