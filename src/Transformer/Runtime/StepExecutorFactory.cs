using Microsoft.ML.Qwen3Moe.Execution;

namespace Microsoft.ML.Qwen3Moe.Runtime;

/// <summary>The one place that chooses how a model's stages are run (single stage, or a pipeline schedule).</summary>
internal static class StepExecutorFactory
{
    /// <summary>
    /// A <see cref="SingleStageExecutor"/> for one stage; for several, the pipeline executor with the schedule mapped
    /// from <paramref name="schedule"/>. The executor does not own the stages.
    /// </summary>
    /// <exception cref="NotSupportedException">Several stages, and this build has no pipeline executor yet.</exception>
    public static IStepExecutor Create(IReadOnlyList<Qwen3MoeForCausalLM> stages, Qwen3MoePipelineSchedule schedule, int microBatches)
    {
        if (stages.Count == 1) return new SingleStageExecutor(stages[0]);
        // Maps to PipelineExecutor(stages, PipelineScheduleKind.GPipe / OneForwardOneBackward, microBatches) once it is merged.
        throw new NotSupportedException(
            $"Pipelined execution ({stages.Count} stages, {schedule}, {microBatches} micro-batches) needs the pipeline executor, which this build does not include yet; set NumberOfStages = 1.");
    }
}
