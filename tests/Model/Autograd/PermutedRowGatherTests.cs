using Microsoft.ML.Qwen3Moe.Autograd;
using Microsoft.ML.Qwen3Moe.Kernels;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Autograd;

/// <summary><see cref="PermutedRowGather"/>: the rows of <c>index_select</c>, and the gradient plain autograd gives (its <c>index_add_</c>).</summary>
public class PermutedRowGatherTests
{
    /// <summary>A random permutation of R·group pair slots, as the experts' sort makes: source row = perm / group, back = inverse.</summary>
    [TestCase(1)]
    [TestCase(3)]
    public void ForwardAndGradientEqualIndexSelect(int group)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        const long rows = 7, hidden = 5;
        long n = rows * group;
        var perm = randperm(n);                                                          // output row -> pair slot
        var inverse = empty_like(perm).scatter_(0, perm, arange(n));                     // pair slot -> output row
        var source = perm.div(group, rounding_mode: RoundingMode.floor);                // output row -> row of x
        var x = randn(rows, hidden).requires_grad_(true);
        var upstream = randn(n, hidden);
        var plain = x.index_select(0, source);
        var gPlain = autograd.grad(new[] { (plain * upstream).sum() }, new[] { x })[0];
        var gathered = PermutedRowGather.Apply(x, source, inverse, group);
        TensorAssert.Equal(gathered, plain, "rows");
        var g = autograd.grad(new[] { (gathered * upstream).sum() }, new[] { x })[0];
        TensorAssert.Close(g, gPlain, 1e-6, "gradient (float32: summation order only)");
    }

    /// <summary>In bf16 the group's copies are summed in float32 and rounded once: within one bf16 rounding of the exact sum.</summary>
    [Test]
    public void Bfloat16GradientIsRoundedOnce()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        const long rows = 16, hidden = 32, group = 8;
        long n = rows * group;
        var perm = randperm(n);
        var inverse = empty_like(perm).scatter_(0, perm, arange(n));
        var source = perm.div(group, rounding_mode: RoundingMode.floor);
        var x = randn(rows, hidden).to(ScalarType.BFloat16).requires_grad_(true);
        var upstream = randn(n, hidden).to(ScalarType.BFloat16);
        PermutedRowGather.Apply(x, source, inverse, group).backward(new[] { upstream });
        var exact = zeros(rows, hidden, dtype: ScalarType.Float64).index_add_(0, source, upstream.to(ScalarType.Float64), Scalars.OneF);
        Assert.That(x.grad!.dtype, Is.EqualTo(ScalarType.BFloat16));
        TensorAssert.RelativeToMax(x.grad!, exact, 1.0 / 256, "gradient");
    }
}
