namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>What a training step does when its loss or gradient norm is NaN or infinite.</summary>
public enum NonFinitePolicy
{
    /// <summary>Throw, naming the step and where the value appeared; the parameters keep the last good state.</summary>
    Stop,

    /// <summary>Skip the optimizer update for that step (with a warning through the progress callback) and go on.</summary>
    SkipStep,
}
