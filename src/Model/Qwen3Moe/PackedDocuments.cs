using Microsoft.ML.Qwen3Moe.Kernels;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// What the model derives from <see cref="CausalLMBatch.DocumentIds"/> for packed rows: positions that restart at each
/// document and the block-diagonal causal attention mask. Both are tensor operations on the ids' device (no host read,
/// no loop over tokens), computed once per forward of a stage and shared by its layers.
/// </summary>
internal static class PackedDocuments
{
    /// <summary>
    /// int64 [B,S]: the position of each token in its document (0 at a document's first token), a document being a run of
    /// equal ids in a row.
    /// </summary>
    public static Tensor Positions(Tensor documentIds) // [B,S] -> [B,S]
    {
        using var scope = NewDisposeScope();
        long b = documentIds.shape[0], s = documentIds.shape[1];
        using var length = Scalars.Of(s);
        var index = arange(length, dtype: ScalarType.Int64, device: documentIds.device).unsqueeze(0).expand(b, s);           // [B,S]
        var continues = documentIds.narrow(1, 1, s - 1).eq(documentIds.narrow(1, 0, s - 1));                                 // [B,S-1]
        var first = cat(new[] { zeros(b, 1, dtype: ScalarType.Bool, device: documentIds.device), continues }, 1);           // [B,S]
        var start = index.masked_fill(first, Scalars.Zero).cummax(1).values;                                                 // [B,S]
        return (index - start).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Boolean [B,1,S,S] (true = attend): key j is visible to query i when j ≤ i, both belong to the same document and, with
    /// <paramref name="keyMask"/>, j is a real token; a token always sees itself, so no row is empty.
    /// </summary>
    /// <param name="documentIds">int64 [B,S] document of each token.</param>
    /// <param name="keyMask">Optional [B,S], 0 for padding keys (needed only when padding shares a document id with real tokens).</param>
    public static Tensor CausalMask(Tensor documentIds, Tensor? keyMask)
    {
        using var scope = NewDisposeScope();
        long s = documentIds.shape[1];
        var device = documentIds.device;
        var causal = ones(s, s, dtype: ScalarType.Bool, device: device).tril();                                            // [S,S]
        var same = documentIds.unsqueeze(2).eq(documentIds.unsqueeze(1));                                                    // [B,S,S]
        var mask = same.logical_and(causal);
        if (keyMask is not null)
            mask = mask.logical_and(keyMask.to(ScalarType.Bool).unsqueeze(1)).logical_or(eye(s, dtype: ScalarType.Bool, device: device));
        return mask.unsqueeze(1).MoveToOuterDisposeScope();                                                                 // [B,1,S,S]
    }
}
