using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Microsoft.ML.Qwen3Moe.Autograd;

/// <summary>
/// Activation checkpointing of one decoder layer as a custom autograd function: the forward runs the layer without
/// autograd and keeps only its input (plus the shared rotary tables and masks); the backward re-runs the layer with
/// autograd (MoE statistics off, so nothing is counted twice) and back-propagates the incoming gradients through it.
/// Parameter gradients accumulate directly from that inner backward, as in PyTorch's reentrant checkpoint; the layer's
/// trainable parameters are still passed as inputs, so the node joins the graph even when the layer input itself needs
/// no gradient (e.g. frozen embeddings).
/// </summary>
internal sealed class CheckpointedLayer : MultiTensorFunction<CheckpointedLayer>
{
    /// <inheritdoc />
    public override string Name => nameof(CheckpointedLayer);

    /// <summary>Runs <paramref name="layer"/> checkpointed; same results as <see cref="Qwen3MoeLayer.Forward"/> with statistics counted once.</summary>
    public static (Tensor Output, Tensor? RouterLogits) Apply(Qwen3MoeLayer layer, Tensor x, Tensor cos, Tensor sin, Tensor? attentionMask4d, Tensor? tokenMask)
    {
        var args = new List<object?> { layer, x, cos, sin, attentionMask4d, tokenMask };
        args.AddRange(layer.parameters().Where(p => p.requires_grad));
        var outputs = apply(args.ToArray()!);
        return (outputs[0], outputs.Count > 1 ? outputs[1] : null);
    }

    /// <inheritdoc />
    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var layer = (Qwen3MoeLayer)vars[0];
        var x = (Tensor)vars[1];
        var (cos, sin, mask, tokenMask) = ((Tensor)vars[2], (Tensor)vars[3], vars[4] as Tensor, vars[5] as Tensor);
        ctx.save_for_backward(new List<Tensor> { x, cos, sin, mask!, tokenMask! });
        // TorchSharp keeps an empty_like placeholder per output to materialise missing gradients, owned by the caller's
        // dispose scope; unused outputs (router logits without an aux loss) arrive as undefined gradients instead.
        ctx.set_materialize_grads(false);
        ctx.save_data("layer", layer);
        ctx.save_data("inputs", vars.Length);
        var (output, routerLogits) = layer.Forward(x, cos, sin, mask, tokenMask, countStatistics: true);
        return routerLogits is null ? new List<Tensor> { output } : new List<Tensor> { output, routerLogits };
    }

    /// <inheritdoc />
    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grad_outputs)
    {
        var layer = (Qwen3MoeLayer)ctx.get_data("layer");
        var gradients = new List<Tensor>(new Tensor[(int)ctx.get_data("inputs")]);
        using (var scope = NewDisposeScope())
        using (enable_grad())
        {
            var saved = ctx.get_saved_variables();
            var x = saved[0].detach().requires_grad_(true);
            var (output, routerLogits) = layer.Forward(x, saved[1], saved[2], saved[3], saved[4], countStatistics: false);
            var outputs = new List<Tensor>();
            var grads = new List<Tensor>();
            void Add(Tensor? o, Tensor? g)
            {
                if (o is null || g is null || g.IsInvalid) return;
                outputs.Add(o);
                grads.Add(g);
            }
            Add(output, grad_outputs[0]);
            Add(routerLogits, grad_outputs.Count > 1 ? grad_outputs[1] : null);
            if (outputs.Count > 0) autograd.backward(outputs, grads);
            gradients[1] = x.grad?.MoveToOuterDisposeScope()!;
        }
        return ReturnedGradients.Hold(gradients);
    }
}
