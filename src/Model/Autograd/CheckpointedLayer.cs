using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Microsoft.ML.Qwen3Moe.Autograd;

/// <summary>
/// Runs one layer: its input, the context tensors given to <see cref="CheckpointedLayer.Apply"/> (in order, null where
/// none), and whether to count statistics; returns the output and an optional second output (e.g. router logits).
/// </summary>
internal delegate (Tensor Output, Tensor? Second) CheckpointedRun(Tensor x, IReadOnlyList<Tensor?> context, bool countStatistics);

/// <summary>
/// Activation checkpointing of one layer as a custom autograd function: the forward runs the layer without autograd
/// and keeps only its input and context tensors (e.g. the shared rotary tables and masks); the backward re-runs the layer
/// with autograd (statistics off, so nothing is counted twice) and back-propagates the incoming gradients through it.
/// Parameter gradients accumulate directly from that inner backward, as in PyTorch's reentrant checkpoint; the layer's
/// trainable parameters are still passed as inputs, so the node joins the graph even when the layer input itself needs
/// no gradient (e.g. frozen embeddings).
/// </summary>
internal sealed class CheckpointedLayer : MultiTensorFunction<CheckpointedLayer>
{
    private const int ContextStart = 3; // arguments: module, run, x, context..., parameters...

    /// <inheritdoc />
    public override string Name => nameof(CheckpointedLayer);

    /// <summary>
    /// Runs <paramref name="run"/> over <paramref name="x"/> checkpointed: the same results as running it directly with
    /// statistics counted once; gradients reach <paramref name="x"/> and the trainable parameters of <paramref name="layer"/>.
    /// </summary>
    public static (Tensor Output, Tensor? Second) Apply(nn.Module layer, CheckpointedRun run, Tensor x, params Tensor?[] context)
    {
        var args = new List<object?> { layer, run, x };
        args.Add(context.Length);
        args.AddRange(context);
        args.AddRange(layer.parameters().Where(p => p.requires_grad));
        var outputs = apply(args.ToArray()!);
        return (outputs[0], outputs.Count > 1 ? outputs[1] : null);
    }

    /// <inheritdoc />
    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var run = (CheckpointedRun)vars[1];
        var x = (Tensor)vars[2];
        int count = (int)vars[ContextStart];
        var context = Enumerable.Range(ContextStart + 1, count).Select(i => vars[i] as Tensor).ToList();
        var saved = new List<Tensor> { x };
        saved.AddRange(context!);
        ctx.save_for_backward(saved);
        // TorchSharp keeps an empty_like placeholder per output to materialise missing gradients, owned by the caller's
        // dispose scope; unused outputs (router logits without an aux loss) arrive as undefined gradients instead.
        ctx.set_materialize_grads(false);
        ctx.save_data("run", run);
        ctx.save_data("inputs", vars.Length);
        var (output, second) = run(x, context, countStatistics: true);
        return second is null ? new List<Tensor> { output } : new List<Tensor> { output, second };
    }

    /// <inheritdoc />
    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grad_outputs)
    {
        var run = (CheckpointedRun)ctx.get_data("run");
        var gradients = new List<Tensor>(new Tensor[(int)ctx.get_data("inputs")]);
        using (var scope = NewDisposeScope())
        using (enable_grad())
        {
            var saved = ctx.get_saved_variables();
            var x = saved[0].detach().requires_grad_(true);
            var context = saved.Skip(1).Select(t => t is null || t.IsInvalid ? null : t).ToList();
            var (output, second) = run(x, context, countStatistics: false);
            var outputs = new List<Tensor>();
            var grads = new List<Tensor>();
            void Add(Tensor? o, Tensor? g)
            {
                if (o is null || g is null || g.IsInvalid) return;
                outputs.Add(o);
                grads.Add(g);
            }
            Add(output, grad_outputs[0]);
            Add(second, grad_outputs.Count > 1 ? grad_outputs[1] : null);
            if (outputs.Count > 0) autograd.backward(outputs, grads);
            gradients[2] = x.grad?.MoveToOuterDisposeScope()!;
        }
        return ReturnedGradients.Hold(gradients);
    }
}
