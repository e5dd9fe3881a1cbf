using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.Blocks;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// The LM head's per-token NLL at W1 size (4,096 tokens, hidden 2048, vocab 151,936, bf16, chunks of 1,024 tokens):
/// the model's <see cref="SplitLanguageModellingHead.PerTokenNll"/> (bf16 logits, cast to fp32, logsumexp − picked) against
/// one fused <c>log_softmax(dtype: float32)</c> read of the bf16 logits then a gather, forward-only and forward+backward.
/// </summary>
internal sealed class LmHeadBenchmark : IBenchmark
{
    public string Name => "lm-head";

    public string Description => "per-token NLL of the LM head at W1 size on CUDA: the model's chunked logsumexp vs a fused log_softmax(fp32)";

    public int Run(string[] args)
    {
        InitializeDeviceType(DeviceType.CUDA);
        var dev = CUDA;
        const long T = 4096, H = 2048, V = 151936, Chunk = 1024;
        using var head = new
            SplitLanguageModellingHead((int)H, new Dictionary<string, int> { ["default"] = (int)V }, new[] { "default" }, dev, ScalarType.BFloat16);
        using (no_grad()) head.Weight("default").normal_(0, 0.02);
        var h = (randn(new[] { 1, T, H }, dtype: ScalarType.BFloat16, device: dev)).requires_grad_();
        var labels = randint(0, V, new[] { 1, T }, dtype: ScalarType.Int64, device: dev);

        Tensor LogSoftmaxNll(Tensor hidden, Tensor lbl)
        {
            var rows = hidden.reshape(-1, H);
            var flat = lbl.reshape(-1);
            var parts = new List<Tensor>();
            for (long s = 0; s < T; s += Chunk)
            {
                var logp = head.forward(rows.narrow(0, s, Chunk)).log_softmax(1, ScalarType.Float32);   // one read of bf16, fp32 out
                parts.Add(-logp.gather(1, flat.narrow(0, s, Chunk).unsqueeze(1)).squeeze(1));
            }
            return cat(parts, 0).reshape(lbl.shape);
        }

        var a = head.PerTokenNll(h, labels);
        var b = LogSoftmaxNll(h, labels);
        Console.WriteLine($"max |difference| {(a - b).abs().max().item<float>():E2} (NLL mean {a.mean().item<float>():F4})");
        foreach (var (name, f) in new (string, Func<Tensor, Tensor, Tensor>)[]
            { ("PerTokenNll (logsumexp)", head.PerTokenNll), ("log_softmax(fp32)+gather", LogSoftmaxNll) })
        {
            double fwd = Time(() => { using var _ = no_grad(); f(h, labels); });
            double both = Time(() => f(h, labels).sum().backward());
            Console.WriteLine($"| {name} | forward {fwd * 1e3:F2} ms | forward+backward {both * 1e3:F2} ms |");
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
