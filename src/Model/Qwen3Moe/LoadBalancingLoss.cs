using static TorchSharp.torch;

using Microsoft.ML.Qwen3Moe.Kernels;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Sums over router rows from which the load-balancing loss is assembled; sums of several groups of rows (layers on
/// different pipeline stages) add up to the sums of their union.
/// </summary>
/// <param name="Choices">float32 [E], constant: top-k choices per expert (masked rows left out).</param>
/// <param name="Probabilities">float32 [E], differentiable: summed routing probabilities per expert.</param>
/// <param name="Rows">float32 scalar, constant: number of (layer, token) rows counted.</param>
internal sealed record LoadBalancingSums(Tensor Choices, Tensor Probabilities, Tensor Rows);

/// <summary>
/// Switch-Transformer load-balancing loss as HF computes it: concatenate the router logits of all sparse layers, softmax,
/// top-k, then <c>E * Σ_k Σ_e f[k,e] · P[e]</c> with f the fraction of tokens whose k-th choice is e and P the mean
/// routing probability; tokens masked out by the attention mask are left out of both means. Because f carries no
/// gradient, the loss is <c>E · Σ_e C[e] · S[e] / N²</c> with C, S and N plain sums over rows (<see cref="LoadBalancingSums"/>).
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
        var sums = Sums(routerLogits, topK, attentionMask);
        return FromSums(sums.Choices, sums.Probabilities, sums.Rows).MoveToOuterDisposeScope();
    }

    /// <summary>The row sums of some layers' router logits (all on one device).</summary>
    public static LoadBalancingSums Sums(IReadOnlyList<Tensor> routerLogits, int topK, Tensor? attentionMask)
    {
        using var scope = NewDisposeScope();
        var logits = cat(routerLogits.Select(l => l.to(ScalarType.Float32)).ToArray(), 0);       // [L*T,E]
        long experts = logits.shape[1];
        var probs = logits.softmax(-1);
        Tensor choices;
        using (no_grad())
        {
            var (_, selected) = probs.topk(topK, -1);
            choices = nn.functional.one_hot(selected, experts).to(ScalarType.Float32).sum(dim: 1);     // [L*T,E]
        }
        Tensor rows;
        if (attentionMask is null)
        {
            rows = full(Array.Empty<long>(), (double)logits.shape[0], dtype: ScalarType.Float32, device: logits.device);
        }
        else
        {
            var m = attentionMask.reshape(-1).to(ScalarType.Float32).to(logits.device).repeat(routerLogits.Count).unsqueeze(1); // [L*T,1]
            choices = choices * m;
            probs = probs * m;
            rows = m.sum();
        }
        return new LoadBalancingSums(choices.sum(dim: 0).MoveToOuterDisposeScope(), probs.sum(dim: 0).MoveToOuterDisposeScope(),
            rows.MoveToOuterDisposeScope());
    }

    /// <summary><c>E · Σ_e C[e] · S[e] / N²</c>: the loss from the sums of every sparse layer.</summary>
    public static Tensor FromSums(Tensor choices, Tensor probabilities, Tensor rows)
    {
        using var scope = NewDisposeScope();
        long experts = choices.shape[0];
        return ((choices * probabilities).sum().Times(experts) / rows.square()).MoveToOuterDisposeScope();
    }
}
