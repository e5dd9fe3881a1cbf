using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>
/// Moves raw bytes between files and the storage of contiguous CPU tensors, without a managed copy of the data.
/// </summary>
/// <remarks>
/// TorchSharp 0.107's <c>Tensor.bytes</c> exposes a contiguous CPU tensor's storage as a <see cref="Span{T}"/>,
/// whose length is an <see cref="int"/>; tensors larger than that (or than the chunk size asked for) are handled
/// through contiguous <c>narrow</c> views of their flattened form, one chunk at a time.
/// Safetensors is little-endian; so is every platform TorchSharp ships for, which the static constructor asserts.
/// </remarks>
internal static class TensorBytes
{
    /// <summary>Default largest span handed to one read or write call.</summary>
    public const int DefaultChunkBytes = 1 << 30;

    static TensorBytes()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Safetensors I/O assumes a little-endian platform.");
        }
    }

    /// <summary>Fills <paramref name="tensor"/> (contiguous, CPU) with bytes read from <paramref name="file"/> at <paramref name="fileOffset"/>.</summary>
    /// <exception cref="InvalidDataException">The file ends before the tensor is filled.</exception>
    public static void ReadInto(SafeFileHandle file, long fileOffset, torch.Tensor tensor, string path, int chunkBytes = DefaultChunkBytes)
    {
        ForEachChunk(tensor, chunkBytes, (span, chunkOffset) =>
            PositionalRead.ReadExactly(file, span, fileOffset + chunkOffset, path, "tensor data (truncated or changed after it was opened?)"));
    }

    /// <summary>Writes the bytes of <paramref name="tensor"/> (contiguous, CPU) to <paramref name="stream"/>.</summary>
    public static void WriteTo(Stream stream, torch.Tensor tensor, int chunkBytes = DefaultChunkBytes)
    {
        ForEachChunk(tensor, chunkBytes, (span, _) => stream.Write(span));
    }

    /// <summary>Receives one chunk of a tensor's storage and its byte offset in the tensor.</summary>
    public delegate void ChunkAction(Span<byte> chunk, long offsetInTensor);

    /// <summary>Calls <paramref name="action"/> on consecutive spans covering the storage of a contiguous CPU tensor.</summary>
    public static void ForEachChunk(torch.Tensor tensor, int chunkBytes, ChunkAction action)
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
        {
            throw new ArgumentException("Expected a contiguous CPU tensor.", nameof(tensor));
        }
        var elementSize = tensor.element_size();
        var total = tensor.numel() * elementSize;
        if (total <= chunkBytes)
        {
            action(tensor.bytes, 0);
            return;
        }

        var chunkElements = Math.Max(1, chunkBytes / elementSize);
        using var flat = tensor.view(-1);
        for (long start = 0; start < flat.numel(); start += chunkElements)
        {
            var length = Math.Min(chunkElements, flat.numel() - start);
            using var slice = flat.narrow(0, start, length);
            action(slice.bytes, start * elementSize);
        }
    }
}
