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

    /// <summary>
    /// Whether the decode steps over a KV cache (after the prefill, without gradients) run each decoder layer as one
    /// TorchScript call (<c>DecodeLayerScript</c>) instead of op by op through the modules. A decode step is bound
    /// by the host's kernel launches, and the script interpreter issues them without TorchSharp's per-op marshalling. The
    /// same ops in the same order, so the logits agree with the module path (float32: within 1e-5).
    /// Layers with active LoRA adapters keep the module path. Default true: on an H200 (W2 shapes, README) a decode step
    /// took 91.6 ms instead of 113.7 at batch 1 and 75.7 ms instead of 107.6 at batch 32.
    /// </summary>
    public bool ScriptedDecode { get; init; } = true;

    /// <summary>
    /// In a scripted decode step, the largest number of token–expert pairs (tokens × top-k) for which the picked experts'
    /// stacked weights are gathered and multiplied with <c>bmm</c> (fewer ops: no sort, histogram or permutation); above
    /// it, the sorted grouped-matmul path of <see cref="Blocks.GroupedExperts"/>. Gathering copies each pair's weights, so
    /// it pays only for a few pairs; 0 (or less) never gathers. Default 16 (batch 1 and 2 with top-8; fewer host ops, not yet
    /// compared with the sorted path on a GPU).
    /// </summary>
    public int DecodeGatherPairs { get; init; } = 16;
}
