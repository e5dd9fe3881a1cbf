using System.Globalization;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// One causal-LM workload: model shapes, batch, device, what to run and the optimizer-state precision. Command-line
/// flags override the workload's defaults: <c>--layers N --batch B --seq S --warmup W --iters N --mode train|score|both
/// --fp32-master --unfused-adamw --moe auto|indexadd|gather --unfused-norm --expand-kv --head-recompute --unfused-loss-grad --profile --seed N
/// --json PATH</c>.
/// </summary>
internal sealed record WorkloadOptions
{
    public required string Name { get; init; }
    public required Qwen3MoeForCausalLMParameters Parameters { get; init; }
    public required int Batch { get; init; }
    public required int Sequence { get; init; }
    public required DeviceType Device { get; init; }
    public required ScalarType DType { get; init; }
    public bool Train { get; init; } = true;
    public bool Score { get; init; } = true;
    public int Warmup { get; init; } = 2;
    public int Iterations { get; init; } = 5;

    /// <summary>Float32 master weights and moments (else bf16 state, like HF's reference run).</summary>
    public bool Float32MasterWeights { get; init; }
    public bool FusedOptimizer { get; init; } = true;
    public string Moe { get; init; } = "auto";
    public bool FusedNorm { get; init; } = true;

    /// <summary>Grouped K/V heads to SDPA with enable_gqa (false: expanded to the query heads first).</summary>
    public bool GqaKernel { get; init; } = true;

    /// <summary>The LM head's loss projects the logits again in backward (<see cref="Kernels.KernelOptions.LossLogitsBudgetBytes"/> 0).</summary>
    public bool HeadRecompute { get; init; }

    /// <summary>The loss's logit gradient as ATen ops (<see cref="Kernels.KernelOptions.FusedLossGradient"/> false).</summary>
    public bool UnfusedLossGradient { get; init; }

    /// <summary>Also print where a training step's time goes (<see cref="StepProfile"/>).</summary>
    public bool Profile { get; init; }
    public long Seed { get; init; } = 1234;

    /// <summary>LoRA adapters to train instead of the full model (the base frozen), or null.</summary>
    public Lora.LoraOptions? Lora { get; init; }

    /// <summary>Activation checkpointing of every decoder layer.</summary>
    public bool Checkpointing { get; init; }
    public string? JsonPath { get; init; }

    /// <summary>The Qwen3-30B-A3B config shipped in <c>data/</c>.</summary>
    public static Qwen3MoeForCausalLMParameters Qwen3_30B_A3B() =>
        HuggingFaceConfig.Load(Path.Combine(AppContext.BaseDirectory, "data", "Qwen3-30B-A3B.config.json"));

    /// <summary>
    /// The optimizer step of <c>bench_hf.py</c>: <c>torch.optim.AdamW(lr=1e-5)</c> defaults (betas 0.9/0.999, eps 1e-8,
    /// weight decay 0.01), constant rate, no clipping, no auxiliary loss.
    /// </summary>
    public static TrainingOptions HfLikeTraining(bool float32MasterWeights, bool fusedOptimizer) => new()
    {
        TotalSteps = 1_000_000, LearningRate = 1e-5, Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8, WeightDecay = 0.01,
        Schedule = LearningRateScheduleKind.Constant, ClipGradientNorm = null, IncludeAuxiliaryLoss = false,
        Float32MasterWeights = float32MasterWeights, FusedOptimizer = fusedOptimizer,
    };

    /// <summary>Applies command-line flags; throws <see cref="ArgumentException"/> on an unknown one.</summary>
    public WorkloadOptions With(string[] args)
    {
        var o = this;
        int Int(int i) => int.Parse(args[i], CultureInfo.InvariantCulture);
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--layers": o = o with { Parameters = o.Parameters with { Model = o.Parameters.Model with { NumHiddenLayers = Int(++i) } } }; break;
                case "--batch": o = o with { Batch = Int(++i) }; break;
                case "--seq": o = o with { Sequence = Int(++i) }; break;
                case "--warmup": o = o with { Warmup = Int(++i) }; break;
                case "--iters": o = o with { Iterations = Int(++i) }; break;
                case "--seed": o = o with { Seed = Int(++i) }; break;
                case "--mode":
                    var mode = args[++i];
                    o = o with { Train = mode is "train" or "both", Score = mode is "score" or "both" };
                    break;
                case "--fp32-master": o = o with { Float32MasterWeights = true }; break;
                case "--unfused-adamw": o = o with { FusedOptimizer = false }; break;
                case "--unfused-norm": o = o with { FusedNorm = false }; break;
                case "--expand-kv": o = o with { GqaKernel = false }; break;
                case "--head-recompute": o = o with { HeadRecompute = true }; break;
                case "--unfused-loss-grad": o = o with { UnfusedLossGradient = true }; break;
                case "--profile": o = o with { Profile = true }; break;
                case "--moe": o = o with { Moe = args[++i] }; break;
                case "--json": o = o with { JsonPath = args[++i] }; break;
                default: throw new ArgumentException($"Unknown option '{args[i]}'.");
            }
        }
        return o;
    }

    /// <summary>A short description of the variant (for the table).</summary>
    public string Variant =>
        $"{(Float32MasterWeights ? "fp32 master+moments" : "state in model dtype")}, {(FusedOptimizer ? "fused AdamW" : "TorchSharp AdamW")}, " +
        $"MoE combine {Moe}, RMSNorm {(FusedNorm ? "fused" : "op-by-op")}, attention {(GqaKernel ? "enable_gqa" : "expanded K/V")}, " +
        $"loss head {(HeadRecompute ? "recomputes logits" : "keeps logits")} with {(UnfusedLossGradient ? "ATen" : "fused")} logit gradient" +
        (Lora is { } l ? $", LoRA r={l.Rank} alpha={l.Alpha} on {l.Targets}{(l.AdapterDType is { } d ? $" ({d} factors)" : "")}" : "") + (Checkpointing
            ? ", activation checkpointing" : "");
}
