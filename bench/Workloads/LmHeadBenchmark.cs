using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.Autograd;
using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// The LM head's per-token NLL at W1 size (4,096 tokens, hidden 2048, vocabulary 151,936, bf16, chunks of 1,024 tokens),
/// forward-only and forward+backward, for each way <see cref="ChunkedLinearCrossEntropy"/> can run (logits kept or
/// projected again; logit gradient fused or as ATen ops), beside the floor of its three GEMMs alone (logits, hidden-state
/// gradient, weight gradient).
/// </summary>
internal sealed class LmHeadBenchmark : IBenchmark
{
    public string Name => "lm-head";

    public string Description => "LM head + per-token NLL at W1 size on CUDA: kept vs recomputed logits, fused vs ATen gradient, against its GEMMs alone";

    public int Run(string[] args)
    {
        InitializeDeviceType(DeviceType.CUDA);
        var dev = CUDA;
        const long T = 4096, H = 2048, V = 151936, Chunk = 1024;
        var w = randn(new[] { V, H }, device: dev).Times(0.02).to(ScalarType.BFloat16).requires_grad_();
        var h = randn(new[] { T, H }, device: dev).to(ScalarType.BFloat16).requires_grad_();
        var labels = randint(0, V, new[] { T }, dtype: ScalarType.Int64, device: dev);
        using var count = Scalars.Of(T);

        double gemms = Time(() =>
        {
            using var _ = no_grad();
            var logits = h.matmul(w.t());                                                         // [T,V]
            logits.matmul(w);                                                                    // [T,H]
            logits.t().matmul(h);                                                                // [V,H]
        });
        double flops = 3 * 2.0 * T * H * V;
        Console.WriteLine($"| three GEMMs alone (logits, d hidden, d weight) | | {gemms * 1e3:F2} ms ({flops / gemms / 1e12:F0} TFLOP/s) |");
        foreach (var (keep, fused) in new[] { (false, false), (false, true), (true, false), (true, true) })
        {
            var settings = new ChunkedLinearCrossEntropy.Settings(Chunk, keep, fused);
            double fwd = Time(() =>
            {
                using var _ = no_grad();
                ChunkedLinearCrossEntropy.Apply(h, new[] { w }, labels, settings);
            });
            double both = Time(() =>
            {
                h.grad = null;
                w.grad = null;
                ChunkedLinearCrossEntropy.Apply(h, new[] { w }, labels, settings).sum().div(count).backward();
                ReturnedGradients.ReleaseAll();
            });
            Console.WriteLine($"| logits {(keep ? "kept" : "recomputed")}, {(fused ? "fused" : "ATen")} logit gradient | forward {fwd * 1e3:F2} ms | " +
                $"forward+backward {both * 1e3:F2} ms |");
        }
        return 0;
    }

    private static double Time(Action step)
    {
        for (int i = 0; i < 3; i++) using (NewDisposeScope()) step();
        cuda.synchronize();
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < 10; i++) using (NewDisposeScope()) step();
        cuda.synchronize();
        return watch.Elapsed.TotalSeconds / 10;
    }
}
