namespace Microsoft.ML.Qwen3Moe.Kernels;

/// <summary>
/// The kernel choices of one model, fixed when it is built (as torchtitan passes <c>use_grouped_mm</c> to its MoE
/// layers): no process-wide switch, so two models in one process can differ and tests run in parallel. Every default is
/// the fastest choice measured on an H100 (README, Performance); the alternatives stay for comparison in the benchmarks.
/// </summary>
public sealed record KernelOptions
{
    /// <summary>The fastest measured choices (every property at its default).</summary>
    public static KernelOptions Default { get; } = new();

    /// <summary>
    /// Whether RMSNorm runs as one fused <c>torch.rms_norm</c> kernel (statistics and scaling in float32, one rounding to
    /// the input dtype) rather than HF's op-by-op numerics (normalise in float32, round, then scale). The two agree exactly
    /// in float32 up to summation order. Default true.
    /// </summary>
    public bool FusedRmsNorm { get; init; } = true;

    /// <summary>
    /// Whether grouped K/V heads go to SDPA as they are (<c>enable_gqa</c>) rather than expanded to the query heads first.
    /// Default true.
    /// </summary>
    public bool GroupedQueryAttention { get; init; } = true;

    /// <summary>How the experts move token rows into expert order and back. Default <see cref="ExpertPermutation.Auto"/>.</summary>
    public ExpertPermutation ExpertPermutation { get; init; } = ExpertPermutation.Auto;

    /// <summary>
    /// The most bytes of activation-dtype logits ([tokens, vocab]) the LM head's training loss may keep from its forward
    /// pass for its backward pass. Within this budget the logits are projected once and kept, so the backward pass needs
    /// two GEMMs (the hidden-state and weight gradients); beyond it (and with 0) each chunk's logits are projected again
    /// in the backward pass (a third GEMM), and the head never holds more than one chunk of them. Scoring never keeps
    /// them. Default 2 GiB: the 2 × 2048 tokens of a 151,936-word bf16 head (1.16 GiB) are kept, 8k tokens are not.
    /// </summary>
    public long LossLogitsBudgetBytes { get; init; } = 2L << 30;

    /// <summary>
    /// Whether the LM head's loss forms its logit gradient <c>exp(logit − logsumexp) · upstream</c> (float32 arithmetic,
    /// one rounding to the activation dtype) in one fused TorchScript (NNC) kernel that reads the logits and writes the
    /// gradient, rather than as separate ATen ops over float32 [chunk, vocab] buffers. Same formula either way; on the
    /// CPU the script runs op by op. Default true.
    /// </summary>
    public bool FusedLossGradient { get; init; } = true;
}
