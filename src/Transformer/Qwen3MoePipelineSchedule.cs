namespace Microsoft.ML.Qwen3Moe;

/// <summary>How micro-batches flow through the pipeline stages during training.</summary>
public enum Qwen3MoePipelineSchedule
{
    /// <summary>All forwards, then all backwards (simple; activation memory grows with the number of micro-batches).</summary>
    GPipe,

    /// <summary>One forward, one backward (1F1B): the same result as GPipe with activation memory bounded by the number of stages.</summary>
    OneForwardOneBackward,
}
