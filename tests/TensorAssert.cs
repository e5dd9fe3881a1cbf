using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests;

/// <summary>Tensor comparisons with messages that say what differed and by how much.</summary>
public static class TensorAssert
{
    public static double MaxAbsDiff(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        Assert.That(actual.shape, Is.EqualTo(expected.shape), "shape");
        return (actual.detach().cpu().to(ScalarType.Float64) - expected.detach().cpu().to(ScalarType.Float64)).abs().max().item<double>();
    }

    public static void Close(Tensor actual, Tensor expected, double maxAbs, string what)
    {
        var diff = MaxAbsDiff(actual, expected);
        Assert.That(diff, Is.LessThanOrEqualTo(maxAbs), $"{what}: max abs diff {diff:E3} > {maxAbs:E1}");
    }

    public static void Equal(Tensor actual, Tensor expected, string what)
    {
        using var scope = NewDisposeScope();
        Assert.That(actual.shape, Is.EqualTo(expected.shape), $"{what}: shape");
        Assert.That(actual.cpu().eq(expected.cpu()).all().item<bool>(), Is.True,
            $"{what}: tensors differ\nactual:   {actual.cpu().ToString(TorchSharp.TensorStringStyle.Julia)}\n" +
            $"expected: {expected.cpu().ToString(TorchSharp.TensorStringStyle.Julia)}");
    }

    public static void RelativelyClose(double actual, double expected, double rel, string what)
    {
        var err = Math.Abs(actual - expected) / Math.Max(Math.Abs(expected), 1e-30);
        Assert.That(err, Is.LessThanOrEqualTo(rel), $"{what}: {actual:R} vs {expected:R} (relative error {err:E2} > {rel:E1})");
    }

    /// <summary>max |actual - expected| ≤ rel · max |expected| (a norm-wise relative error, robust to tiny entries).</summary>
    public static void RelativeToMax(Tensor actual, Tensor expected, double rel, string what)
    {
        var diff = MaxAbsDiff(actual, expected);
        using var scope = NewDisposeScope();
        var scale = expected.detach().cpu().to(ScalarType.Float64).abs().max().item<double>();
        Assert.That(diff, Is.LessThanOrEqualTo(rel * scale + 1e-30), $"{what}: max abs diff {diff:E3} > {rel:E1} x max |expected| {scale:E3}");
    }
}
