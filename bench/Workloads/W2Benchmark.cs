using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>W2 of issue 6: the full 48-layer Qwen3-30B-A3B (30.5 B parameters, 61 GB in bf16), forward scoring of 2 x 2048 tokens on one 80 GB GPU.</summary>
internal sealed class W2Benchmark : IBenchmark
{
    public string Name => "w2";

    public string Description => "full 48-layer Qwen3-30B-A3B, bf16 on one CUDA GPU: forward scoring of 2x2048 tokens (flags: see WorkloadOptions)";

    public int Run(string[] args) => CausalLMWorkload.Run(new WorkloadOptions
    {
        Name = "W2",
        Parameters = WorkloadOptions.Qwen3_30B_A3B(),
        Batch = 2, Sequence = 2048, Device = DeviceType.CUDA, DType = ScalarType.BFloat16, Train = false,
    }.With(args));
}
