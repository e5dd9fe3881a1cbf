using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Training.Checkpoints;

/// <summary>
/// The AdamW state of one trained parameter, whichever optimizer holds it (TorchSharp's <see cref="AdamW"/> or our
/// <see cref="FusedAdamW"/>): the moments as live tensors (copied into on restore) and the step count.
/// </summary>
internal sealed record OptimizerSlot(Tensor ExpAvg, Tensor ExpAvgSq, Tensor? MaxExpAvgSq, Func<long> GetStep, Action<long> SetStep)
{
    /// <summary>One slot per trained parameter, in the trainer's order.</summary>
    public static IReadOnlyList<OptimizerSlot> Of(CausalLMTrainer trainer)
    {
        int count = trainer.TrainedParameterNames.Count;
        List<OptimizerSlot> slots;
        if (trainer.FusedOptimizer is { } fused)
        {
            slots = Enumerable.Range(0, fused.Parameters.Count).Select(i => new OptimizerSlot(
                fused.ExpAvg[i], fused.ExpAvgSq[i], null,
                () => (long)fused.StepCounts[i].item<float>(),
                step => { using var _ = no_grad(); using var s = Scalars.Of(step); fused.StepCounts[i].fill_(s); })).ToList();
        }
        else
        {
            var states = trainer.Optimizer!.state_dict().State;
            slots = states.Select(s => s as AdamW.State ?? throw new InvalidOperationException($"Unexpected optimizer state type {s.GetType().Name}."))
                .Select(st => new OptimizerSlot(st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, () => st.step, step => st.step = step)).ToList();
        }
        if (slots.Count != count)
            throw new InvalidOperationException($"The optimizer holds {slots.Count} parameter states for {count} trained parameters.");
        return slots;
    }
}
