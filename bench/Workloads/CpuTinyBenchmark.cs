using TorchSharp;
using Microsoft.ML.Qwen3Moe.Configuration;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>A CPU workload on a tiny Qwen3-MoE (2 layers, width 64, 8 experts top-2, vocab 1,000), float32, batch 2 x 64: runs anywhere in seconds.</summary>
internal sealed class CpuTinyBenchmark : IBenchmark
{
    public string Name => "cpu-tiny";

    public string Description => "tiny Qwen3-MoE on the CPU, fp32, 2x64 tokens: scoring + AdamW train step (flags: see WorkloadOptions)";

    /// <summary>The tiny model's shapes (also what <see cref="VerifyBenchmark"/> compares across devices).</summary>
    public static Qwen3MoeForCausalLMParameters Parameters => new()
    {
        Model = new Qwen3MoeParameters
        {
            Layer = new Qwen3MoeLayerParameters
            {
                HiddenSize = 64, MoeIntermediateSize = 32, IntermediateSize = 128, NumExperts = 8, ExpertsTopK = 2,
                NumAttentionHeads = 4, NumKeyValueHeads = 2, RmsNormEps = 1e-6, HeadDim = 16,
            },
            NumHiddenLayers = 2, RopeBase = 1e6, MaxPositionIds = 4096,
            SplitVocabSize = new Dictionary<string, int> { [Qwen3MoeParameters.DefaultSplitName] = 1000 },
            SplitVocabOrder = new[] { Qwen3MoeParameters.DefaultSplitName },
        },
    };

    public int Run(string[] args) => CausalLMWorkload.Run(new WorkloadOptions
    {
        Name = "CPU-tiny",
        Parameters = Parameters,
        Batch = 2, Sequence = 64, Device = DeviceType.CPU, DType = ScalarType.Float32, Warmup = 2, Iterations = 10,
    }.With(args));
}
