using System.Buffers.Binary;
using System.Buffers;
using System.Collections.ObjectModel;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Storage;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>Writes safetensors files that <see cref="SafetensorsFile"/> (and the Hugging Face loaders) read back.</summary>
internal static class SafetensorsWriter
{
    /// <summary>The metadata Hugging Face writes, and which its loaders check for.</summary>
    public static IReadOnlyDictionary<string, string> DefaultMetadata { get; } = new Dictionary<string, string> { ["format"] = "pt" }.AsReadOnly();

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> atomically (see <see cref="AtomicFile"/>): a failure at
    /// any point, including the enumeration throwing, leaves any existing file untouched and no temp file behind.
    /// </summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="tensors">Names and tensors, written in this order. Tensors may live on any device, be non-contiguous,
    /// and have dtype bool, uint8, int8, int16, int32, int64, float16, bfloat16, float32 or float64; they are not modified.</param>
    /// <param name="metadata">The <c>__metadata__</c> strings; <c>{"format":"pt"}</c> when null, and <c>format</c> is
    /// added as <c>pt</c> when missing, since Hugging Face loaders refuse files without it.</param>
    /// <exception cref="ArgumentException">A name is repeated, empty or <c>__metadata__</c>, or a dtype is not supported.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        AtomicFile.Write(path, stream => WriteTo(stream, tensors, metadata));
    }

    /// <summary>Bytes a tensor takes in a safetensors data section.</summary>
    public static long DataBytes(torch.Tensor tensor) => tensor.numel() * tensor.element_size();

    private static void WriteTo(Stream stream, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var items = CheckNames(tensors);
        var header = BuildHeader(items, metadata);

        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);

        foreach (var (_, tensor) in items)
        {
            using var scope = torch.NewDisposeScope();
            var cpu = tensor.detach().cpu().contiguous();
            TensorBytes.WriteTo(stream, cpu);
        }
    }

    /// <summary>Materializes the sequence, rejecting names a safetensors header cannot hold unambiguously.</summary>
    public static List<KeyValuePair<string, torch.Tensor>> CheckNames(IEnumerable<KeyValuePair<string, torch.Tensor>> tensors)
    {
        var items = new List<KeyValuePair<string, torch.Tensor>>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in tensors)
        {
            ArgumentNullException.ThrowIfNull(item.Value, $"tensor '{item.Key}'");
            if (string.IsNullOrEmpty(item.Key) || item.Key == "__metadata__")
            {
                throw new ArgumentException($"'{item.Key}' cannot be used as a tensor name.", nameof(tensors));
            }
            if (!names.Add(item.Key))
            {
                throw new ArgumentException($"Tensor name '{item.Key}' is given more than once.", nameof(tensors));
            }
            items.Add(item);
        }
        return items;
    }

    private static byte[] BuildHeader(List<KeyValuePair<string, torch.Tensor>> items, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            if (metadata is null || !metadata.ContainsKey("format"))
            {
                json.WriteString("format", "pt");
            }
            foreach (var (key, value) in metadata ?? ReadOnlyDictionary<string, string>.Empty)
            {
                json.WriteString(key, value);
            }
            json.WriteEndObject();

            long offset = 0;
            foreach (var (name, tensor) in items)
            {
                var bytes = DataBytes(tensor);
                json.WriteStartObject(name);
                json.WriteString("dtype", SafetensorsDType.FromScalarType(tensor.dtype, name));
                json.WriteStartArray("shape");
                foreach (var dim in tensor.shape)
                {
                    json.WriteNumberValue(dim);
                }
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }

        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        var padded = (buffer.WrittenCount + 7) / 8 * 8;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }
}
