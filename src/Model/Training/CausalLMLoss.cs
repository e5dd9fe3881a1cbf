using Microsoft.ML.Qwen3Moe.Blocks;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>The causal-LM training objective, as HF defines it, built from the per-token losses the model returns.</summary>
public static class CausalLMLoss
{
    /// <summary>Label value that marks a position without a target.</summary>
    public const long IgnoreIndex = SplitLanguageModellingHead.IgnoreIndex;

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
    public static Tensor Mean(Tensor logps, Tensor labels) // [B,S] float32 -> scalar
    {
        using var scope = NewDisposeScope();
        var count = labels.ne(Scalars.IgnoreIndex).sum().clamp_min(Scalars.One).to(ScalarType.Float32);
        return (logps.sum() / count).MoveToOuterDisposeScope();
    }

    /// <summary>HF's load-balancing loss over the router logits of the sparse layers (float32 scalar; 0 when there are none).</summary>
    public static Tensor AuxiliaryLoss(IReadOnlyList<Tensor> routerLogits, int topK, Tensor? attentionMask = null) =>
        routerLogits.Count == 0 ? zeros(Array.Empty<long>(), dtype: ScalarType.Float32) : LoadBalancingLoss.Compute(routerLogits, topK, attentionMask);
}
