namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>What a <see cref="PipelineAction"/> does.</summary>
public enum PipelineActionKind
{
    /// <summary>Run the stage's forward pass on the micro-batch and send its outputs to the next stage.</summary>
    Forward,

    /// <summary>Back-propagate the micro-batch through the stage and send the input gradient to the previous stage.</summary>
    Backward,
}
