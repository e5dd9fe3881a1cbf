namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>One tensor described by a safetensors header.</summary>
/// <param name="Name">The tensor's key in the header.</param>
/// <param name="DType">The dtype string exactly as in the header: "F32", "BF16", "F16", "I64", ... (see <see cref="SafetensorsDType"/>).</param>
/// <param name="Shape">The dimensions; empty for a scalar.</param>
/// <param name="Begin">Start of the tensor's bytes, relative to the data section that follows the header.</param>
/// <param name="End">End (exclusive) of the tensor's bytes, relative to the data section.</param>
/// <remarks>
/// Entries handed out by <see cref="SafetensorsFile"/> are validated: the dtype is supported, every dimension is
/// non-negative, <c>End - Begin</c> equals the element count times the dtype size, and the range lies inside the file.
/// </remarks>
internal sealed record SafetensorsEntry(string Name, string DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of bytes the tensor occupies in the data section.</summary>
    public long ByteLength => End - Begin;
}
