namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>How <see cref="GroupedExperts"/> moves token rows into expert order and back (benchmarks compare them).</summary>
internal enum ExpertPermutation
{
    /// <summary>Gather with <c>index_select</c>; combine with a weighted <c>index_add_</c>. Both the combine and the gather's backward are atomic adds.</summary>
    IndexAdd,

    /// <summary>Gather rows through <c>torch.embedding</c> both ways (backward: sorted-segment sums, no atomics); combine the k rows of each token with one <c>bmm</c> against its routing weights.</summary>
    SortedGather,
}
