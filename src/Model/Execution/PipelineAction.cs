namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>One step of a pipeline program: a forward or a backward of one micro-batch on one stage.</summary>
/// <param name="Kind">Forward or backward.</param>
/// <param name="Stage">Stage index.</param>
/// <param name="MicroBatch">Micro-batch index.</param>
public readonly record struct PipelineAction(PipelineActionKind Kind, int Stage, int MicroBatch)
{
    /// <inheritdoc />
    public override string ToString() => $"{(Kind == PipelineActionKind.Forward ? "F" : "B")}{MicroBatch}@{Stage}";
}
