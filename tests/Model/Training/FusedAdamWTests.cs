using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training;

/// <summary>The fused multi-tensor optimizer and clipping against TorchSharp's own AdamW and clip_grad_norm_, on the CPU.</summary>
public class FusedAdamWTests
{
    private static Parameter[] Params(long seed, ScalarType dtype)
    {
        manual_seed(seed);
        return new[] { new Parameter(randn(5, 3).to(dtype)), new Parameter(randn(7).to(dtype)), new Parameter(randn(2, 2, 2).to(dtype)) };
    }

    [TestCase(ScalarType.Float32, 1e-6)]
    [TestCase(ScalarType.BFloat16, 4e-2)] // 2 bf16 ulps at |x| < 4: the fused kernel rounds once, TorchSharp after every op
    public void TrajectoryMatchesTorchSharpAdamW(ScalarType dtype, double tol)
    {
        using var scope = NewDisposeScope();
        var a = Params(1, dtype);
        var b = Params(1, dtype);
        using var fused = new FusedAdamW(a, 0.9, 0.95, 1e-8, 0.1);
        using var plain = optim.AdamW(b, 1e-2, 0.9, 0.95, 1e-8, 0.1);
        for (int step = 0; step < 6; step++)
        {
            double lr = 1e-2 * (1 + step);
            for (int i = 0; i < a.Length; i++)
            {
                var g = randn(a[i].shape).to(dtype);
                if (i == 1 && step == 2) { a[i].grad = null; b[i].grad = null; continue; }   // no gradient: no update
                a[i].grad = g.clone();
                b[i].grad = g.clone();
            }
            fused.Step(lr);
            foreach (var pg in plain.ParamGroups) pg.LearningRate = lr;
            plain.step();
            for (int i = 0; i < a.Length; i++) TensorAssert.Close(a[i], b[i], tol, $"param {i} after step {step}");
        }
        Assert.That(fused.StepCounts[1].item<float>(), Is.EqualTo(5f), "skipped step not counted");
    }

    [TestCase(0.5)]
    [TestCase(double.PositiveInfinity)]
    public void ClippingMatchesClipGradNorm(double maxNorm)
    {
        using var scope = NewDisposeScope();
        var a = Params(2, ScalarType.Float32);
        var b = Params(2, ScalarType.Float32);
        for (int i = 0; i < a.Length; i++)
        {
            var g = randn(a[i].shape);
            a[i].grad = g.clone();
            b[i].grad = g.clone();
        }
        var norm = GradientClipping.ClipByGlobalNorm(a, maxNorm).item<float>();
        var expected = nn.utils.clip_grad_norm_(b, maxNorm);
        TensorAssert.RelativelyClose(norm, expected, 1e-6, "norm");
        for (int i = 0; i < a.Length; i++) TensorAssert.Close(a[i].grad!, b[i].grad!, 1e-6, $"grad {i}");
    }
}
