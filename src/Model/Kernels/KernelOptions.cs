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

    /// <summary>
    /// Whether causal attention without a mask (training, scoring, a prefill) on CUDA in bf16/fp16 runs FlashAttention-2
    /// directly (<c>torch._scaled_dot_product_flash_attention</c>, grouped K/V heads native) rather than through SDPA's
    /// backend choice. PyTorch 2.10+ with cuDNN 9.15.1+ prefers cuDNN attention on Hopper, which builds an execution plan for
    /// every sequence length it has not seen: about 0.1 s (up to 1.8 s) per new length for forward and backward on an H200,
    /// so W1 rows of varying lengths trained at 74% of the fixed-length speed, against 99% with flash, which has no
    /// per-length cost, as accurate gradients, and about 2% less speed at one fixed length (README, Performance). Other
    /// cases (a mask, a decode step, float32, head sizes flash does not take) use SDPA either way. Default true.
    /// </summary>
    public bool FlashAttention { get; init; } = true;

    /// <summary>How the experts move token rows into expert order and back. Default <see cref="ExpertPermutation.Auto"/>.</summary>
    public ExpertPermutation ExpertPermutation { get; init; } = ExpertPermutation.Auto;
}
