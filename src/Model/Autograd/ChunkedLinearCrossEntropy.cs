using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

using Microsoft.ML.Qwen3Moe.Kernels;

namespace Microsoft.ML.Qwen3Moe.Autograd;

/// <summary>
/// Per-token negative log-likelihood of a bias-free linear head, <c>logsumexp(h·Wᵀ) − h·W[label]</c> in float32, as a
/// custom autograd function that never holds the logits of more than one chunk of tokens: the forward keeps only the
/// per-token log-sum-exp (float32 [N]); the backward recomputes each chunk's logits to form <c>softmax − onehot</c> and
/// from it the gradients of the hidden states and of each weight. Working memory is about three float32 [chunk, V]
/// buffers in either pass, whatever the number of tokens.
/// </summary>
internal sealed class ChunkedLinearCrossEntropy : SingleTensorFunction<ChunkedLinearCrossEntropy>
{
    private const int WeightsStart = 3;

    /// <inheritdoc />
    public override string Name => nameof(ChunkedLinearCrossEntropy);

    /// <param name="hidden">[N,H] hidden states.</param>
    /// <param name="weights">[V_i,H] projections whose logits are concatenated in this order (the vocabulary splits).</param>
    /// <param name="labels">[N] int64 targets, <see cref="CausalLMLoss.IgnoreIndex"/> where there is none.</param>
    /// <param name="chunkTokens">Tokens per chunk.</param>
    /// <returns>float32 [N]: positive NLL, 0 at ignored positions.</returns>
    public static Tensor Apply(Tensor hidden, IReadOnlyList<Tensor> weights, Tensor labels, long chunkTokens)
    {
        var args = new List<object> { chunkTokens, hidden, labels };
        args.AddRange(weights);
        return apply(args.ToArray());
    }

    /// <inheritdoc />
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (chunk, h, labels, weights) = Unpack(vars);
        using var scope = NewDisposeScope();
        long n = h.shape[0];
        var nll = empty(n, dtype: ScalarType.Float32, device: h.device);                     // [N]
        for (long start = 0; start < n; start += chunk)
        {
            using var chunkScope = NewDisposeScope();
            long c = Math.Min(chunk, n - start);
            var lbl = labels.narrow(0, start, c);
            // one fused kernel reads the activation-dtype logits and writes float32 log-probabilities
            var logp = Logits(h.narrow(0, start, c), weights).log_softmax(1, ScalarType.Float32);   // [c,V] float32
            var picked = logp.gather(1, lbl.clamp_min(Scalars.Zero).unsqueeze(1)).squeeze(1);               // [c]
            nll.narrow(0, start, c).copy_(-picked * lbl.ne(Scalars.IgnoreIndex));
        }
        var saved = new List<Tensor> { h, labels };
        saved.AddRange(weights);
        ctx.save_for_backward(saved);
        ctx.save_data("chunk", chunk);
        ctx.set_materialize_grads(false); // the output placeholder TorchSharp would use belongs to the caller's dispose scope
        ctx.save_data("needs", vars.Select(v => v is Tensor t && t.requires_grad).ToArray());
        return nll.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output)
    {
        var saved = ctx.get_saved_variables();
        var (h, labels) = (saved[0], saved[1]);
        var weights = saved.Skip(2).ToList();
        long chunk = (long)ctx.get_data("chunk");
        var needs = (bool[])ctx.get_data("needs");
        var gradients = new List<Tensor>(new Tensor[needs.Length]);
        if (grad_output.IsInvalid) return gradients; // the loss was not used
        using (var scope = NewDisposeScope())
        {
            long n = h.shape[0];
            var gh = needs[1] ? zeros_like(h) : null;                                         // [N,H]
            var gw = weights.Select((w, i) => needs[WeightsStart + i] ? zeros_like(w) : null).ToArray(); // [V_i,H]
            for (long start = 0; start < n; start += chunk)
            {
                using var chunkScope = NewDisposeScope();
                long c = Math.Min(chunk, n - start);
                var hc = h.narrow(0, start, c);
                var lbl = labels.narrow(0, start, c);
                var p = Logits(hc, weights).softmax(1, ScalarType.Float32);                    // [c,V] float32, one kernel
                p.scatter_add_(1, lbl.clamp_min(Scalars.Zero).unsqueeze(1), full(c, 1, Scalars.MinusOneF, dtype: ScalarType.Float32, device: p.device));
                var weight = grad_output.narrow(0, start, c) * lbl.ne(Scalars.IgnoreIndex); // [c]
                var dLogits = p.mul_(weight.unsqueeze(1)).to(h.dtype);                        // [c,V]
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

    /// <summary>[c,V] logits of one chunk in the activation dtype, as the plain head projects them (callers normalise in float32).</summary>
    private static Tensor Logits(Tensor hc, IReadOnlyList<Tensor> weights) =>
        weights.Count == 1 ? nn.functional.linear(hc, weights[0]) : cat(weights.Select(w => nn.functional.linear(hc, w)).ToArray(), 1);

    private static (long Chunk, Tensor Hidden, Tensor Labels, List<Tensor> Weights) Unpack(object[] vars) =>
        ((long)vars[0], (Tensor)vars[1], (Tensor)vars[2], vars.Skip(WeightsStart).Cast<Tensor>().ToList());
}
