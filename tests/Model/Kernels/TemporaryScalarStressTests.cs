using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Tests.Model.Training;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Kernels;

/// <summary>
/// The hot paths that handed TorchSharp temporary Scalars (see <c>Scalars</c>) run many times while another thread forces
/// garbage collections: no call may fail, and every result must equal the run without collections. Before the fix the
/// fused RMSNorm and AdamW calls failed here with "Expected false to be true" (c10::Scalar::toLong on a freed Scalar).
/// </summary>
[TestFixture, NonParallelizable]
public class TemporaryScalarStressTests
{
    private const int RmsNormCalls = 40_000, AdamWSteps = 2_500, TrainingSteps = 12;

    /// <summary>Runs <paramref name="work"/> while a thread loops <c>GC.Collect(); GC.WaitForPendingFinalizers();</c>.</summary>
    private static T UnderCollections<T>(Func<T> work)
    {
        using var stop = new CancellationTokenSource();
        var collector = new Thread(() =>
        {
            while (!stop.IsCancellationRequested) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        }) { IsBackground = true };
        collector.Start();
        try { return work(); }
        finally { stop.Cancel(); collector.Join(); }
    }

    private static (int Failures, string? First) Count(int n, Action<int> call)
    {
        int failures = 0; string? first = null;
        for (int i = 0; i < n; i++)
        {
            try { call(i); }
            catch (Exception e) { failures++; first ??= e.GetType().Name + ": " + e.Message; }
        }
        return (failures, first);
    }

    [Test]
    public void FusedRmsNormUnderCollections()
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(7);
        var x = randn(new long[] { 4, 64 }, generator: gen);
        var w = randn(new long[] { 64 }, generator: gen);
        var expected = AtenScript.RmsNorm(x, w, 1e-6);
        var (failures, first) = UnderCollections(() => Count(RmsNormCalls, _ =>
        {
            using var s = NewDisposeScope();
            var y = AtenScript.RmsNorm(x, w, 1e-6);
            if (!y.eq(expected).all().item<bool>()) throw new InvalidOperationException("result differs from the run without collections");
        }));
        Assert.That(failures, Is.Zero, $"{failures} of {RmsNormCalls} calls failed; first: {first}");
    }

    [Test]
    public void FusedAdamWUnderCollections()
    {
        Tensor[] Run(bool collect)
        {
            using var gen = new Generator(11);
            var ps = new[] { new Parameter(randn(new long[] { 8, 8 }, generator: gen)), new Parameter(randn(new long[] { 8 }, generator: gen)) };
            foreach (var p in ps) p.grad = randn(p.shape, generator: gen);
            using var opt = new FusedAdamW(ps, 0.9, 0.95, 1e-8, 0.1);
            var (failures, first) = collect
                ? UnderCollections(() => Count(AdamWSteps, i => opt.Step(1e-3 * (1 + i % 3))))
                : Count(AdamWSteps, i => opt.Step(1e-3 * (1 + i % 3)));
            Assert.That(failures, Is.Zero, $"{failures} of {AdamWSteps} AdamW steps failed; first: {first}");
            return ps.Select(p => p.detach().clone()).ToArray();
        }
        var quiet = Run(collect: false);
        var stressed = Run(collect: true);
        for (int i = 0; i < quiet.Length; i++) TensorAssert.Equal(stressed[i], quiet[i], $"parameter {i} after {AdamWSteps} steps");
    }

    [Test]
    public void TrainingStepsUnderCollections()
    {
        List<double> Run(bool collect)
        {
            using var tiny = new TinyTraining(seed: 3, TinyTraining.Options(TrainingSteps));
            return collect ? UnderCollections(() => tiny.TrainUntil(TrainingSteps)) : tiny.TrainUntil(TrainingSteps);
        }
        var quiet = Run(collect: false);
        var stressed = Run(collect: true);
        Assert.That(stressed, Is.EqualTo(quiet), "losses of the tiny model's training steps with and without forced collections");
    }
}
