namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>Order in which a <see cref="PipelineExecutor"/> runs the forward and backward passes of micro-batches on stages.</summary>
public enum PipelineScheduleKind
{
    /// <summary>Every stage runs all micro-batch forwards, then all backwards (in reverse order): simple, m activations in flight per stage.</summary>
    GPipe,

    /// <summary>
    /// One-forward-one-backward (non-interleaved, as Megatron/d9d): stage s runs min(n−1−s, m) warm-up forwards, then
    /// alternates one forward and one backward, then drains. At most n−s micro-batches are in flight on stage s, so peak
    /// activation memory is bounded by the number of stages instead of the number of micro-batches.
    /// </summary>
    OneForwardOneBackward,
}
