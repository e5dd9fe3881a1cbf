namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>Shape of the learning rate after warm-up.</summary>
public enum LearningRateScheduleKind
{
    /// <summary>Half-cosine decay from the peak to the minimum at the last step.</summary>
    Cosine,

    /// <summary>Linear decay from the peak to the minimum at the last step.</summary>
    Linear,

    /// <summary>Stays at the peak.</summary>
    Constant,
}
