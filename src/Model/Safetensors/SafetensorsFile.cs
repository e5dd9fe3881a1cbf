using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>
/// A safetensors file opened for reading: the header is parsed and validated by <see cref="Open"/>, tensor data is
/// read lazily, one tensor at a time, straight from the file into the new tensor's storage.
/// </summary>
/// <remarks>
/// <para>
/// Why our own reader rather than TorchSharp.PyBridge: PyBridge 1.4.4 is built against older TorchSharp and is reported to
/// fail on 0.107 with <see cref="MissingMethodException"/> (a binary-compatibility break we cannot patch from here), and a
/// loader of downloaded files needs guarantees we want to own and test: every header rule in
/// <see cref="SafetensorsHeader"/>, no allocation sized by the file's claims, and reads straight into tensor storage.
/// The format is small enough that a strict reader is a few hundred lines we fully control.
/// </para>
/// <para>
/// Every problem with the file's content surfaces as <see cref="InvalidDataException"/> naming the file; I/O failures
/// (missing file, permissions) surface as the usual <see cref="IOException"/> family. <see cref="ReadTensor"/> is safe to
/// call from several threads at once (reads are positional). The file stays open until <see cref="Dispose"/>.
/// </para>
/// </remarks>
internal sealed class SafetensorsFile : IDisposable
{
    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart, SafetensorsHeader header)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        Entries = header.Entries;
        Metadata = header.Metadata;
    }

    /// <summary>The file's full path.</summary>
    public string Path { get; }

    /// <summary>The tensors in header order.</summary>
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }

    /// <summary>The header's <c>__metadata__</c> strings (may be empty).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens a file and validates its header; no tensor data is read.</summary>
    /// <exception cref="InvalidDataException">The file is not a valid safetensors file; the message says why.</exception>
    public static SafetensorsFile Open(string path)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        RegularFile.Require(fullPath); // a FIFO would block the open, a device would never end
        var handle = File.OpenHandle(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, FileOptions.RandomAccess);
        try
        {
            var (dataStart, header) = ReadHeader(fullPath, handle);
            return new SafetensorsFile(fullPath, handle, dataStart, header);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads one tensor into a new CPU tensor with the stored dtype and shape.</summary>
    /// <exception cref="KeyNotFoundException">The file has no tensor named <paramref name="name"/>.</exception>
    /// <exception cref="InvalidDataException">The data is unreadable (file truncated since it was opened, invalid booleans).</exception>
    public torch.Tensor ReadTensor(string name)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (!Entries.TryGetValue(name, out var entry))
        {
            throw new KeyNotFoundException($"Safetensors file '{Path}' has no tensor '{name}'.");
        }
        SafetensorsDType.TryParse(entry.DType, out var type, out _);

        var tensor = torch.empty(entry.Shape, type, torch.CPU);
        try
        {
            TensorBytes.ReadInto(_handle, _dataStart + entry.Begin, tensor, Path);
            if (type == torch.ScalarType.Bool)
            {
                CheckBooleans(entry, tensor);
            }
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _handle.Dispose();

    private static (long DataStart, SafetensorsHeader Header) ReadHeader(string path, SafeFileHandle handle)
    {
        var fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
        {
            throw SafetensorsHeader.Invalid(path, $"the file has {fileLength} bytes, fewer than the 8-byte header length prefix.");
        }

        Span<byte> prefix = stackalloc byte[8];
        PositionalRead.ReadExactly(handle, prefix, 0, path, "the header length prefix");
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > SafetensorsHeader.MaxHeaderBytes)
        {
            throw SafetensorsHeader.Invalid(path, $"the header length {headerLength} exceeds the limit of {SafetensorsHeader.MaxHeaderBytes} bytes.");
        }
        if (headerLength > (ulong)(fileLength - 8))
        {
            throw SafetensorsHeader.Invalid(path, $"the header length {headerLength} goes beyond the end of the {fileLength}-byte file.");
        }

        var json = new byte[headerLength];
        PositionalRead.ReadExactly(handle, json, 8, path, "the header");
        var dataStart = 8 + (long)headerLength;
        return (dataStart, SafetensorsHeader.Parse(path, json, fileLength - dataStart));
    }

    private void CheckBooleans(SafetensorsEntry entry, torch.Tensor tensor)
    {
        // Bytes other than 0 and 1 in a bool tensor are undefined behaviour for libtorch kernels.
        TensorBytes.ForEachChunk(tensor, TensorBytes.DefaultChunkBytes, (chunk, _) =>
        {
            if (chunk.IndexOfAnyExcept((byte)0, (byte)1) >= 0)
            {
                throw SafetensorsHeader.Invalid(Path, $"BOOL tensor '{entry.Name}' holds bytes other than 0 and 1.");
            }
        });
    }
}
