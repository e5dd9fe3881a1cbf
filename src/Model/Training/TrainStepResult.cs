namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>What one optimizer step did (host values, read once per step).</summary>
/// <param name="Step">0-based optimizer step.</param>
/// <param name="Loss">Mean next-token loss over the step's target tokens (without the auxiliary loss); 0 when the step has
/// no target tokens (every label -100), never NaN.</param>
/// <param name="AuxiliaryLoss">Load-balancing loss (mean over the step's batches).</param>
/// <param name="GradientNorm">Global gradient L2 norm before clipping.</param>
/// <param name="LearningRate">Learning rate used.</param>
/// <param name="TargetTokens">Target tokens in the step.</param>
/// <param name="Skipped">True when the update was skipped for a non-finite value.</param>
public readonly record struct
    TrainStepResult(int Step, double Loss, double AuxiliaryLoss, double GradientNorm, double LearningRate, long TargetTokens, bool Skipped);
