using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>Range checks on token ids before they index a table (an out-of-range id on CUDA kills the context).</summary>
internal static class TokenIds
{
    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the offending id when one is outside [0, vocab).</summary>
    public static void Check(Tensor ids, long vocab)
    {
        if (ids.numel() == 0) return;
        using var scope = NewDisposeScope();
        var range = stack(new[] { ids.min(), ids.max() }).cpu().data<long>().ToArray(); // one small host read per batch
        if (range[0] < 0 || range[1] >= vocab)
            throw new ArgumentOutOfRangeException(nameof(ids), $"Token id {(range[0] < 0 ? range[0] : range[1])} is outside the vocabulary [0, {vocab}).");
    }
}
