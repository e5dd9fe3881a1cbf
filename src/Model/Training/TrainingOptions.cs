using Microsoft.ML.Qwen3Moe.Configuration;

namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>Optimizer, schedule and step settings of <see cref="CausalLMTrainer"/>. Defaults follow common LLM fine-tuning practice.</summary>
public sealed record TrainingOptions
{
    /// <summary>Peak learning rate. Default 1e-4.</summary>
    public double LearningRate { get; init; } = 1e-4;

    /// <summary>AdamW beta1. Default 0.9.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW beta2. Default 0.95.</summary>
    public double Beta2 { get; init; } = 0.95;

    /// <summary>AdamW epsilon. Default 1e-8.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Decoupled weight decay (applied to every trainable parameter, as HF's reference run does). Default 0.1.</summary>
    public double WeightDecay { get; init; } = 0.1;

    /// <summary>Linear warm-up steps. Default 0.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>Decay after warm-up. Default cosine.</summary>
    public LearningRateScheduleKind Schedule { get; init; } = LearningRateScheduleKind.Cosine;

    /// <summary>Final learning rate as a fraction of the peak. Default 0.1.</summary>
    public double MinLearningRateRatio { get; init; } = 0.1;

    /// <summary>Optimizer steps of the run (sets the schedule's length). Required.</summary>
    public required int TotalSteps { get; init; }

    /// <summary>Maximum global gradient L2 norm; null disables clipping. Default 1.0.</summary>
    public double? ClipGradientNorm { get; init; } = 1.0;

    /// <summary>Whether the router load-balancing loss (times the config's coefficient) is added. Default true.</summary>
    public bool IncludeAuxiliaryLoss { get; init; } = true;

    /// <summary>
    /// Keep float32 master weights and AdamW moments when the model is in bf16/fp16 (quality; +12 bytes per parameter).
    /// False keeps them in the parameter dtype, like a plain bf16 PyTorch run (memory). Default true.
    /// </summary>
    public bool Float32MasterWeights { get; init; } = true;

    /// <summary>
    /// Update all parameters with one fused multi-tensor AdamW kernel per device and dtype (<see cref="FusedAdamW"/>),
    /// instead of TorchSharp's per-parameter <c>optim.AdamW</c> (about ten full passes per tensor). Same update rule.
    /// Default true.
    /// </summary>
    public bool FusedOptimizer { get; init; } = true;

    /// <summary>Which parameters train. Default all.</summary>
    public TrainableParameters Trainable { get; init; } = TrainableParameters.All;

    /// <summary>What happens on a NaN/infinite loss or gradient. Default stop.</summary>
    public NonFinitePolicy OnNonFinite { get; init; } = NonFinitePolicy.Stop;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        Require.That(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "must be a positive finite number.");
        Require.That(Beta1 is >= 0 and < 1, nameof(Beta1), Beta1, "must be in [0, 1).");
        Require.That(Beta2 is >= 0 and < 1, nameof(Beta2), Beta2, "must be in [0, 1).");
        Require.That(Epsilon > 0, nameof(Epsilon), Epsilon, "must be positive.");
        Require.That(WeightDecay >= 0, nameof(WeightDecay), WeightDecay, "must not be negative.");
        Require.That(TotalSteps > 0, nameof(TotalSteps), TotalSteps, "must be positive.");
        Require.That(WarmupSteps >= 0, nameof(WarmupSteps), WarmupSteps, "must not be negative.");
        Require.That(MinLearningRateRatio is >= 0 and <= 1, nameof(MinLearningRateRatio), MinLearningRateRatio, "must be in [0, 1].");
        Require.That(ClipGradientNorm is null or > 0, nameof(ClipGradientNorm), ClipGradientNorm, "must be positive (or null to disable).");
    }
}
