namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>
/// Piecewise schedule as d9d builds them: linear warm-up from 0 to the peak over <see cref="WarmupSteps"/>, then
/// cosine, linear or constant down to <c>peak · MinRatio</c> at <see cref="TotalSteps"/>.
/// </summary>
/// <param name="Peak">Peak learning rate.</param>
/// <param name="WarmupSteps">Steps of linear warm-up (0 = none).</param>
/// <param name="TotalSteps">Optimizer steps in the run.</param>
/// <param name="Kind">Decay after warm-up.</param>
/// <param name="MinRatio">Final learning rate as a fraction of the peak.</param>
public sealed record LearningRateSchedule(double Peak, int WarmupSteps, int TotalSteps, LearningRateScheduleKind Kind, double MinRatio)
{
    /// <summary>Learning rate of optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(int step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        if (Kind == LearningRateScheduleKind.Constant) return Peak;
        int decaySteps = Math.Max(TotalSteps - WarmupSteps - 1, 1);
        double progress = Math.Clamp((double)(step - WarmupSteps) / decaySteps, 0, 1);
        double min = Peak * MinRatio;
        double factor = Kind == LearningRateScheduleKind.Cosine ? 0.5 * (1 + Math.Cos(Math.PI * progress)) : 1 - progress;
        return min + (Peak - min) * factor;
    }
}
