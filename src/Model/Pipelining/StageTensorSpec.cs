using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Pipelining;

/// <summary>Shape and dtype of one tensor a pipeline stage receives or sends for one micro-batch.</summary>
/// <param name="Shape">The shape, e.g. [b, S, H].</param>
/// <param name="DType">The element type.</param>
public sealed record StageTensorSpec(IReadOnlyList<long> Shape, ScalarType DType)
{
    /// <summary>Whether <paramref name="t"/> has exactly this shape and dtype.</summary>
    public bool Matches(Tensor t) => t.dtype == DType && t.shape.SequenceEqual(Shape);

    /// <inheritdoc />
    public override string ToString() => $"[{string.Join(", ", Shape)}] {DType}";
}
