using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

using Microsoft.ML.Qwen3Moe.Kernels;

namespace Microsoft.ML.Qwen3Moe.Autograd;

/// <summary>
/// Per-token negative log-likelihood of a bias-free linear head, <c>logsumexp(h·Wᵀ) − h·W[label]</c> in float32, as a
/// custom autograd function over chunks of tokens. The forward pass keeps the per-token log-sum-exp (float32 [N]) and,
/// when <see cref="Settings.KeepLogits"/>, the activation-dtype logits [N,V] it projected once; otherwise the backward
/// pass projects each chunk's logits again, and no pass holds the logits of more than one chunk. The backward pass forms
/// each chunk's logit gradient <c>(softmax − onehot) · upstream</c> in float32 with one rounding to the activation dtype
/// (fused into one kernel with <see cref="Settings.FusedGradient"/>), then the gradients of the hidden states and of
/// each weight.
/// </summary>
internal sealed class ChunkedLinearCrossEntropy : SingleTensorFunction<ChunkedLinearCrossEntropy>
{
    private const int WeightsStart = 3;

    /// <summary>How the function runs (see the class summary).</summary>
    /// <param name="ChunkTokens">Tokens per chunk.</param>
    /// <param name="KeepLogits">Keep the forward's logits for the backward pass (no second projection).</param>
    /// <param name="FusedGradient">Form the logit gradient with <see cref="AtenScript.LogitGradient"/> (else ATen ops).</param>
    public sealed record Settings(long ChunkTokens, bool KeepLogits = false, bool FusedGradient = false);

    /// <inheritdoc />
    public override string Name => nameof(ChunkedLinearCrossEntropy);

    /// <param name="hidden">[N,H] hidden states.</param>
    /// <param name="weights">[V_i,H] projections whose logits are concatenated in this order (the vocabulary splits).</param>
    /// <param name="labels">[N] int64 targets, <see cref="CausalLMLoss.IgnoreIndex"/> where there is none.</param>
    /// <param name="chunkTokens">Tokens per chunk.</param>
    /// <returns>float32 [N]: positive NLL, 0 at ignored positions.</returns>
    public static Tensor Apply(Tensor hidden, IReadOnlyList<Tensor> weights, Tensor labels, long chunkTokens) =>
        Apply(hidden, weights, labels, new Settings(chunkTokens));

    /// <inheritdoc cref="Apply(Tensor, IReadOnlyList{Tensor}, Tensor, long)"/>
    /// <param name="hidden">[N,H] hidden states.</param>
    /// <param name="weights">[V_i,H] projections.</param>
    /// <param name="labels">[N] int64 targets.</param>
    /// <param name="settings">Chunking, logits kept or not, fused gradient or not. Logits are kept only when a gradient
    /// will be needed (grad mode on and an input requiring it).</param>
    public static Tensor Apply(Tensor hidden, IReadOnlyList<Tensor> weights, Tensor labels, Settings settings)
    {
        bool differentiable = is_grad_enabled() && (hidden.requires_grad || weights.Any(w => w.requires_grad));
        var args = new List<object> { settings with { KeepLogits = settings.KeepLogits && differentiable }, hidden, labels };
        args.AddRange(weights);
        return apply(args.ToArray());
    }

    /// <inheritdoc />
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (settings, h, labels, weights) = Unpack(vars);
        using var scope = NewDisposeScope();
        long n = h.shape[0], chunk = settings.ChunkTokens;
        var nll = empty(n, dtype: ScalarType.Float32, device: h.device);                     // [N]
        var lse = empty(n, dtype: ScalarType.Float32, device: h.device);                     // [N]
        var logits = settings.KeepLogits ? Logits(h, weights) : null;                         // [N,V] activation dtype
        for (long start = 0; start < n; start += chunk)
        {
            using var chunkScope = NewDisposeScope();
            long c = Math.Min(chunk, n - start);
            var lbl = labels.narrow(0, start, c);
            var index = lbl.clamp_min(Scalars.Zero).unsqueeze(1);                            // [c,1]
            var lg = logits?.narrow(0, start, c) ?? Logits(h.narrow(0, start, c), weights);  // [c,V]
            // one fused kernel reads the activation-dtype logits and writes float32 log-probabilities
            var picked = lg.log_softmax(1, ScalarType.Float32).gather(1, index).squeeze(1);  // [c] log p(label)
            nll.narrow(0, start, c).copy_(picked.neg() * lbl.ne(Scalars.IgnoreIndex));
            lse.narrow(0, start, c).copy_(lg.gather(1, index).squeeze(1).to(ScalarType.Float32).Plus(picked.neg())); // logit − log p
        }
        // what autograd saves must outlive this scope (TorchSharp saves it after forward returns); the caller's scope
        // then releases these handles, and the graph its own references when it is freed
        var saved = new List<Tensor> { h, labels, lse.MoveToOuterDisposeScope() };
        saved.AddRange(weights);
        if (logits is not null) saved.Add(logits.MoveToOuterDisposeScope());
        ctx.save_for_backward(saved);
        ctx.save_data("settings", settings);
        ctx.set_materialize_grads(false); // the output placeholder TorchSharp would use belongs to the caller's dispose scope
        ctx.save_data("needs", vars.Select(v => v is Tensor t && t.requires_grad).ToArray());
        return nll.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output)
    {
        var settings = (Settings)ctx.get_data("settings");
        var needs = (bool[])ctx.get_data("needs");
        long chunk = settings.ChunkTokens;
        var gradients = new List<Tensor>(new Tensor[needs.Length]);
        if (grad_output.IsInvalid) return gradients; // the loss was not used
        using (var scope = NewDisposeScope())
        {
            // unpacked inside the scope: these handles are new references (the kept logits among them), released here
            // rather than by the finalizer, which could keep the [N,V] logits alive for several steps
            var saved = ctx.get_saved_variables();
            var (h, labels, lse) = (saved[0], saved[1], saved[2]);
            var weights = saved.Skip(3).Take(needs.Length - WeightsStart).ToList();
            var logits = settings.KeepLogits ? saved[^1] : null;
            long n = h.shape[0];
            var gh = needs[1] ? zeros_like(h) : null;                                         // [N,H]
            var gw = weights.Select((w, i) => needs[WeightsStart + i] ? zeros_like(w) : null).ToArray(); // [V_i,H]
            for (long start = 0; start < n; start += chunk)
            {
                using var chunkScope = NewDisposeScope();
                long c = Math.Min(chunk, n - start);
                var hc = h.narrow(0, start, c);
                var lbl = labels.narrow(0, start, c);
                var lg = logits?.narrow(0, start, c) ?? Logits(hc, weights);                  // [c,V]
                var upstream = grad_output.narrow(0, start, c) * lbl.ne(Scalars.IgnoreIndex); // [c] float32
                var dLogits = LogitGradient(lg, lse.narrow(0, start, c), upstream, lbl, settings.FusedGradient); // [c,V] activation dtype
                long offset = 0;
                for (int i = 0; i < weights.Count; i++)
                {
                    long v = weights[i].shape[0];
                    var block = dLogits.narrow(1, offset, v);                                  // [c,V_i]
                    offset += v;
                    gh?.narrow(0, start, c).addmm_(block, weights[i]);
                    gw[i]?.addmm_(block.t(), hc);
                }
            }
            gradients[1] = gh?.MoveToOuterDisposeScope()!;
            for (int i = 0; i < gw.Length; i++) gradients[WeightsStart + i] = gw[i]?.MoveToOuterDisposeScope()!;
        }
        return ReturnedGradients.Hold(gradients);
    }

    /// <summary>
    /// <c>(softmax(logits) − onehot(label)) · upstream</c> [c,V] in the dtype of <paramref name="logits"/>: the softmax part
    /// <c>exp(logit − lse) · upstream</c> in float32 and rounded once (fused, or as ATen ops), then the label column
    /// <c>(p − 1) · upstream</c>, formed in float32 from the picked logit and rounded once.
    /// </summary>
    internal static Tensor LogitGradient(Tensor logits, Tensor lse, Tensor upstream, Tensor labels, bool fused) // [c,V], [c], [c], [c] -> [c,V]
    {
        using var scope = NewDisposeScope();
        var index = labels.clamp_min(Scalars.Zero).unsqueeze(1);                             // [c,1]
        var g = fused
            ? AtenScript.LogitGradient(logits, lse.unsqueeze(1), upstream.unsqueeze(1))
            : logits.sub(lse.unsqueeze(1)).exp_().mul_(upstream.unsqueeze(1)).to(logits.dtype);   // float32 by type promotion
        var p = logits.gather(1, index).sub(lse.unsqueeze(1)).exp_();                        // [c,1] float32 p(label)
        var label = p.sub_(Scalars.OneF).mul_(upstream.unsqueeze(1)).to(logits.dtype);        // [c,1]
        return g.scatter_(1, index, label).MoveToOuterDisposeScope();
    }

    /// <summary>[c,V] logits of one chunk in the activation dtype, as the plain head projects them (callers normalise in float32).</summary>
    private static Tensor Logits(Tensor hc, IReadOnlyList<Tensor> weights) =>
        weights.Count == 1 ? nn.functional.linear(hc, weights[0]) : cat(weights.Select(w => nn.functional.linear(hc, w)).ToArray(), 1);

    private static (Settings Settings, Tensor Hidden, Tensor Labels, List<Tensor> Weights) Unpack(object[] vars) =>
        ((Settings)vars[0], (Tensor)vars[1], (Tensor)vars[2], vars.Skip(WeightsStart).Cast<Tensor>().ToList());
}
