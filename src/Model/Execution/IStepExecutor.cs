using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>Sums of one forward(-backward) pass over a batch; device tensors, read them only when needed (each read syncs).</summary>
/// <param name="NllSum">float32 scalar: sum of the per-token negative log-likelihoods over target tokens.</param>
/// <param name="AuxLoss">float32 scalar: the load-balancing loss of the batch (0 without sparse layers).</param>
public sealed record StepSums(Tensor NllSum, Tensor AuxLoss);

/// <summary>
/// Runs the model's stages over a batch: the single-stage executor, or a pipeline schedule over devices. Training passes
/// accumulate gradients in the stages' parameters; the caller owns the optimizer.
/// </summary>
public interface IStepExecutor : IDisposable
{
    /// <summary>The model stages, first to last.</summary>
    IReadOnlyList<Qwen3MoeForCausalLM> Stages { get; }

    /// <summary>
    /// Forward and backward of <c>(Σ NLL) / targetTokens + auxCoefficient · aux</c> over <paramref name="batch"/> (which
    /// must carry labels). <paramref name="targetTokens"/> is the number of target tokens of the whole optimizer step,
    /// so accumulation and micro-batching weight every token equally.
    /// </summary>
    StepSums ForwardBackward(CausalLMBatch batch, long targetTokens, double auxCoefficient);

    /// <summary>Forward only, without autograd: per-token NLL [B,S] float32 on the last stage's device.</summary>
    Tensor Score(CausalLMBatch batch);
}
