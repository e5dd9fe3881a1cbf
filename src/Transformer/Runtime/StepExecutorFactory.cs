using Microsoft.ML.Qwen3Moe.Execution;

namespace Microsoft.ML.Qwen3Moe.Runtime;

/// <summary>The one place that chooses how a model's stages are run (single stage, or a pipeline schedule).</summary>
internal static class StepExecutorFactory
{
    /// <summary>
    /// A <see cref="SingleStageExecutor"/> for one stage without micro-batching; otherwise (several stages, or
    /// micro-batches, which bound activation memory on one stage too) a <see cref="PipelineExecutor"/> with the schedule
    /// mapped from <paramref name="schedule"/>. The executor does not own the stages.
    /// </summary>
    public static IStepExecutor Create(IReadOnlyList<Qwen3MoeForCausalLM> stages, PipelineScheduleKind schedule, int microBatches) =>
        stages.Count == 1 && microBatches == 1
            ? new SingleStageExecutor(stages[0])
            : new PipelineExecutor(stages, schedule switch
            {
                PipelineScheduleKind.GPipe => PipelineScheduleKind.GPipe,
                PipelineScheduleKind.OneForwardOneBackward => PipelineScheduleKind.OneForwardOneBackward,
                _ => throw new ArgumentOutOfRangeException(nameof(schedule), schedule, $"Unknown pipeline schedule {schedule}."),
            }, microBatches);
}
