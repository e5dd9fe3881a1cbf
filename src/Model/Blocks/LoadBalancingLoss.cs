using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Switch-Transformer load-balancing loss as HF computes it: concatenate the router logits of all sparse layers, softmax,
/// top-k, then <c>E * Σ_k Σ_e f[k,e] · P[e]</c> with f the fraction of tokens whose k-th choice is e and P the mean
/// routing probability; tokens masked out by the attention mask are left out of both means.
/// </summary>
internal static class LoadBalancingLoss
{
    /// <param name="routerLogits">Per sparse layer, [T,E] with T = B*S.</param>
    /// <param name="topK">Experts per token.</param>
    /// <param name="attentionMask">Optional [B,S], 1 for real tokens.</param>
    /// <returns>A float32 scalar.</returns>
    public static Tensor Compute(IReadOnlyList<Tensor> routerLogits, int topK, Tensor? attentionMask)
    {
        using var scope = NewDisposeScope();
        var logits = cat(routerLogits.Select(l => l.to(ScalarType.Float32)).ToArray(), 0);       // [L*T,E]
        long experts = logits.shape[1];
        var probs = logits.softmax(-1);
        var (_, selected) = probs.topk(topK, -1);
        var expertMask = nn.functional.one_hot(selected, experts).to(ScalarType.Float32);         // [L*T,k,E]
        Tensor tokensPerExpert, probPerExpert;
        if (attentionMask is null)
        {
            tokensPerExpert = expertMask.mean(new long[] { 0 });                                     // [k,E]
            probPerExpert = probs.mean(new long[] { 0 });                                            // [E]
        }
        else
        {
            var m = attentionMask.reshape(-1).to(ScalarType.Float32).repeat(routerLogits.Count);    // [L*T]
            tokensPerExpert = (expertMask * m.view(-1, 1, 1)).sum(new long[] { 0 }) / m.sum();
            probPerExpert = (probs * m.view(-1, 1)).sum(new long[] { 0 }) / m.sum();
        }
        return ((tokensPerExpert * probPerExpert.unsqueeze(0)).sum() * experts).MoveToOuterDisposeScope();
    }
}
