using Microsoft.ML.Qwen3Moe.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// LoRA fine-tuning of the 48-layer Qwen3-30B-A3B on one GPU, the settings of <c>../shared/gpu/hf_lora.py</c>: bf16 base
/// (random weights), r = 16, alpha 32 on q/k/v/o and the routed experts, activation checkpointing, fused AdamW, batch 2 x
/// 2048. Our factors are bf16 (the grouped-matmul path) with float32 master weights and moments (HF's PEFT keeps float32
/// factors). Extra flags: <c>--targets attn|attn+experts</c>, <c>--no-ckpt</c>, <c>--fp32-adapters</c>, <c>--bf16-state</c>,
/// then <see cref="WorkloadOptions"/>'s.
/// </summary>
internal sealed class LoraBenchmark : IBenchmark
{
    public string Name => "lora";

    public string Description =>
        "LoRA r=16 (attention + routed experts) on the 48-layer Qwen3-30B-A3B, bf16 base, checkpointing, 2x2048 (flags: --targets attn|attn+experts " +
            "--no-ckpt --fp32-adapters --bf16-state, then WorkloadOptions')";

    public int Run(string[] args)
    {
        var lora = new LoraOptions { Rank = 16, Alpha = 32, Targets = LoraTargets.Attention | LoraTargets.Experts };
        bool ckpt = true, fp32Master = true;
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--targets":
                    lora = lora with { Targets = args[++i] == "attn" ? LoraTargets.Attention : LoraTargets.Attention | LoraTargets.Experts };
                    break;
                case "--no-ckpt": ckpt = false; break;
                case "--fp32-adapters": lora = lora with { AdapterDType = ScalarType.Float32 }; break;
                case "--bf16-state": fp32Master = false; break;
                default: rest.Add(args[i]); break;
            }
        }
        return CausalLMWorkload.Run(new WorkloadOptions
        {
            Name = "LoRA",
            Parameters = WorkloadOptions.Qwen3_30B_A3B(),
            Batch = 2, Sequence = 2048, Device = DeviceType.CUDA, DType = ScalarType.BFloat16, Score = false,
            Lora = lora, Checkpointing = ckpt, Float32MasterWeights = fp32Master, Warmup = 2, Iterations = 4,
        }.With(rest.ToArray()));
    }
}
