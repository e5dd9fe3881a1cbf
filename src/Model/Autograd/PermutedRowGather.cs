using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Microsoft.ML.Qwen3Moe.Autograd;

/// <summary>
/// <c>x.index_select(0, source)</c> for a <paramref name="source"/> in which every row of x appears exactly
/// <c>group</c> times (the rows of a permutation of x repeated <c>group</c> times), with a backward pass that gathers
/// too: <c>dx = dOut.index_select(0, back).view(R, group, H).sum(1)</c>, where <c>back</c> lists for each row of x the
/// output rows that copied it. Plain autograd would scatter with <c>index_add_</c> (atomic adds, <c>group</c> of them per
/// row, each rounded to the activation dtype); this sums the <c>group</c> copies in one reduction (float32 accumulation,
/// one rounding) and is deterministic.
/// </summary>
internal sealed class PermutedRowGather : SingleTensorFunction<PermutedRowGather>
{
    /// <inheritdoc />
    public override string Name => nameof(PermutedRowGather);

    /// <param name="x">[R,H] rows.</param>
    /// <param name="source">[R·group] int64: the row of x each output row copies.</param>
    /// <param name="back">[R·group] int64: for row r of x, entries r·group .. r·group+group−1 are the output rows that copy it.</param>
    /// <param name="group">How many output rows copy each row of x.</param>
    /// <returns>[R·group, H].</returns>
    public static Tensor Apply(Tensor x, Tensor source, Tensor back, long group) => apply(x, source, back, group);

    /// <inheritdoc />
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (x, source, back, group) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (long)vars[3]);
        ctx.save_for_backward(new List<Tensor> { back });
        ctx.save_data("group", group);
        ctx.save_data("rows", x.shape[0]);
        return x.index_select(0, source);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output)
    {
        var gradients = new List<Tensor> { null!, null!, null!, null! };
        if (grad_output.IsInvalid) return gradients;
        using (var scope = NewDisposeScope())
        {
            var back = ctx.get_saved_variables()[0];
            long group = (long)ctx.get_data("group"), rows = (long)ctx.get_data("rows");
            var g = grad_output.index_select(0, back);                                       // [R·group, H], grouped per row of x
            gradients[0] = (group == 1 ? g : g.view(rows, group, -1).sum(1)).MoveToOuterDisposeScope();  // [R,H]
        }
        return ReturnedGradients.Hold(gradients);
    }
}
