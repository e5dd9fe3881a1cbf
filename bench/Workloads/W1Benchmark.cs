using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>W1 of issue 6: Qwen3-30B-A3B layer shapes, 4 layers, batch 2 x 2048, bf16, AdamW; forward scoring and train step on one GPU.</summary>
internal sealed class W1Benchmark : IBenchmark
{
    public string Name => "w1";

    public string Description => "Qwen3-30B-A3B shapes, 4 layers, 2x2048 tokens, bf16 on CUDA: scoring + AdamW train step (flags: see WorkloadOptions)";

    public int Run(string[] args)
    {
        var p = WorkloadOptions.Qwen3_30B_A3B();
        return CausalLMWorkload.Run(new WorkloadOptions
        {
            Name = "W1",
            Parameters = p with { Model = p.Model with { NumHiddenLayers = 4 } },
            Batch = 2, Sequence = 2048, Device = DeviceType.CUDA, DType = ScalarType.BFloat16,
        }.With(args));
    }
}
