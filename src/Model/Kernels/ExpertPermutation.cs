namespace Microsoft.ML.Qwen3Moe.Kernels;

/// <summary>How <see cref="Blocks.GroupedExperts"/> moves token rows into expert order and back (benchmarks compare them).</summary>
public enum ExpertPermutation
{
    /// <summary>
    /// <see cref="GatherBmm"/> when no gradient is needed (scoring), <see cref="IndexAdd"/> otherwise: the faster of
    /// the two in each mode on an H100.
    /// </summary>
    Auto,

    /// <summary>Gather with <c>index_select</c>; combine with a weighted <c>index_add_</c> (atomic adds, 8 per output row with top-8).</summary>
    IndexAdd,

    /// <summary>
    /// Gather with <c>index_select</c>; combine by gathering the rows back into token order (inverse permutation) and
    /// one <c>bmm</c> of each token's k rows with its routing weights (fp32 accumulation). The backward passes of both
    /// gathers gather with the other permutation (<see cref="Autograd.PermutedRowGather"/>; a token's k copies summed in
    /// one reduction): no atomic adds in either pass, deterministic.
    /// </summary>
    GatherBmm,
}
