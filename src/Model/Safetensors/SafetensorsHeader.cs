using System.Collections.ObjectModel;
using System.Text.Json;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>
/// The parsed and validated JSON header of a safetensors file: its tensor entries (in header order) and its
/// <c>__metadata__</c> strings.
/// </summary>
/// <remarks>
/// Layout: 8 bytes little-endian header length N, N bytes of UTF-8 JSON, then the data section.
/// Everything here treats the file as untrusted input. Each rule below either matches the reference implementation
/// (huggingface/safetensors <c>validate</c>) or is stricter:
/// <list type="bullet">
/// <item>the header is valid UTF-8, valid JSON, an object, with no property repeated at any level;</item>
/// <item>every entry is an object with exactly <c>dtype</c> (a supported string), <c>shape</c> (array of integers
/// &gt;= 0, at most <see cref="MaxRank"/> of them) and <c>data_offsets</c> (two integers);</item>
/// <item>element count x dtype size is computed with overflow checks and must equal <c>end - begin</c>;</item>
/// <item>the ranges, sorted, tile the data section exactly: no overlap, no hole, no trailing bytes
/// (which also rejects truncated files);</item>
/// <item><c>__metadata__</c>, when present, is an object of string values.</item>
/// </list>
/// Every failure is an <see cref="InvalidDataException"/> whose message names the file and the problem.
/// Nothing is allocated from a size the file claims: the header buffer is bounded by the file length and
/// <see cref="MaxHeaderBytes"/>, tensors are bounded by their (validated) byte ranges.
/// </remarks>
internal sealed class SafetensorsHeader
{
    /// <summary>Upper bound on the JSON header (the reference implementation uses the same 100 MB limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Upper bound on a tensor's number of dimensions.</summary>
    public const int MaxRank = 64;

    private const string MetadataKey = "__metadata__";

    private SafetensorsHeader(IReadOnlyDictionary<string, SafetensorsEntry> entries, IReadOnlyDictionary<string, string> metadata)
    {
        Entries = entries;
        Metadata = metadata;
    }

    /// <summary>The tensor entries in header order.</summary>
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }

    /// <summary>The <c>__metadata__</c> strings; empty when the header has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Builds the exception every validation failure throws.</summary>
    public static InvalidDataException Invalid(string path, string problem, Exception? inner = null) =>
        new($"Invalid safetensors file '{path}': {problem}", inner);

    /// <summary>Parses and validates a header.</summary>
    /// <param name="path">The file, for messages.</param>
    /// <param name="json">The header bytes.</param>
    /// <param name="dataLength">Length of the data section that follows the header.</param>
    public static SafetensorsHeader Parse(string path, ReadOnlyMemory<byte> json, long dataLength)
    {
        UntrustedJson.Invalid invalid = (problem, inner) => Invalid(path, problem, inner);
        using (var document = UntrustedJson.Parse(json, maxDepth: 8, "the header", invalid))
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Invalid(path, $"the header is a JSON {root.ValueKind}, not an object.");
            }

            var entries = new OrderedDictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
            IReadOnlyDictionary<string, string> metadata = ReadOnlyDictionary<string, string>.Empty;
            foreach (var property in UntrustedJson.UniqueProperties(root, "the header", invalid))
            {
                if (property.Name == MetadataKey)
                {
                    metadata = ParseMetadata(path, property.Value, invalid);
                }
                else
                {
                    entries.Add(property.Name, ParseEntry(path, property.Name, property.Value));
                }
            }

            CheckRangesTileData(path, entries.Values, dataLength);
            return new SafetensorsHeader(new ReadOnlyDictionary<string, SafetensorsEntry>(entries), metadata);
        }
    }

    private static IReadOnlyDictionary<string, string> ParseMetadata(string path, JsonElement value, UntrustedJson.Invalid invalid)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Invalid(path, $"'{MetadataKey}' is a JSON {value.ValueKind}, not an object of strings.");
        }
        var metadata = new OrderedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in UntrustedJson.UniqueProperties(value, $"'{MetadataKey}'", invalid))
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw Invalid(path, $"'{MetadataKey}' value '{item.Name}' is a JSON {item.Value.ValueKind}, not a string.");
            }
            metadata.Add(item.Name, item.Value.GetString()!);
        }
        return new ReadOnlyDictionary<string, string>(metadata);
    }

    private static SafetensorsEntry ParseEntry(string path, string name, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Invalid(path, $"tensor '{name}' is a JSON {value.ValueKind}, not an object.");
        }

        JsonElement? dtype = null, shape = null, offsets = null;
        foreach (var field in value.EnumerateObject())
        {
            ref JsonElement? slot = ref dtype;
            switch (field.Name)
            {
                case "dtype": slot = ref dtype; break;
                case "shape": slot = ref shape; break;
                case "data_offsets": slot = ref offsets; break;
                default: throw Invalid(path, $"tensor '{name}' has unknown field '{field.Name}'.");
            }
            if (slot is not null)
            {
                throw Invalid(path, $"tensor '{name}' names '{field.Name}' more than once.");
            }
            slot = field.Value;
        }

        var dtypeName = dtype switch
        {
            null => throw Invalid(path, $"tensor '{name}' has no 'dtype'."),
            { ValueKind: JsonValueKind.String } d => d.GetString()!,
            { } d => throw Invalid(path, $"tensor '{name}' has a 'dtype' that is a JSON {d.ValueKind}, not a string."),
        };
        if (!SafetensorsDType.TryParse(dtypeName, out _, out var elementSize))
        {
            throw Invalid(path, $"tensor '{name}' has unknown or unsupported dtype '{dtypeName}' (supported: {SafetensorsDType.SupportedList}).");
        }

        var dims = ReadIntegers(path, name, "shape", shape ?? throw Invalid(path, $"tensor '{name}' has no 'shape'."));
        if (dims.Length > MaxRank)
        {
            throw Invalid(path, $"tensor '{name}' has {dims.Length} dimensions (at most {MaxRank} are accepted).");
        }
        var range = ReadIntegers(path, name, "data_offsets", offsets ?? throw Invalid(path, $"tensor '{name}' has no 'data_offsets'."));
        if (range.Length != 2)
        {
            throw Invalid(path, $"tensor '{name}' has {range.Length} 'data_offsets' (expected [begin, end]).");
        }
        var (begin, end) = (range[0], range[1]);
        if (begin < 0 || end < begin)
        {
            throw Invalid(path, $"tensor '{name}' has data_offsets [{begin}, {end}]: end before begin or negative.");
        }

        var expectedBytes = ByteLength(path, name, dims, elementSize);
        if (end - begin != expectedBytes)
        {
            throw Invalid(path, $"tensor '{name}' has data_offsets [{begin}, {end}] ({end - begin} bytes) but shape [{string.Join(", ", dims)}] of " +
                $"{dtypeName} needs {expectedBytes} bytes.");
        }
        return new SafetensorsEntry(name, dtypeName, dims, begin, end);
    }

    private static long[] ReadIntegers(string path, string name, string field, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw Invalid(path, $"tensor '{name}' has a '{field}' that is a JSON {value.ValueKind}, not an array.");
        }
        var result = new long[value.GetArrayLength()];
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out result[i]))
            {
                throw Invalid(path, $"tensor '{name}' has a '{field}' item that is not a 64-bit integer: {item.GetRawText()}.");
            }
            i++;
        }
        return result;
    }

    private static long ByteLength(string path, string name, long[] dims, int elementSize)
    {
        long count = 1;
        foreach (var dim in dims)
        {
            if (dim < 0)
            {
                throw Invalid(path, $"tensor '{name}' has negative dimension {dim}.");
            }
            try
            {
                count = checked(count * dim);
            }
            catch (OverflowException)
            {
                throw Invalid(path, $"tensor '{name}' has shape [{string.Join(", ", dims)}], whose element count overflows 64 bits.");
            }
        }
        try
        {
            return checked(count * elementSize);
        }
        catch (OverflowException)
        {
            throw Invalid(path, $"tensor '{name}' has shape [{string.Join(", ", dims)}], whose byte size overflows 64 bits.");
        }
    }

    private static void CheckRangesTileData(string path, IEnumerable<SafetensorsEntry> entries, long dataLength)
    {
        long expectedBegin = 0;
        SafetensorsEntry? previous = null;
        foreach (var entry in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (entry.Begin < expectedBegin)
            {
                throw Invalid(path, $"tensors '{previous!.Name}' [{previous.Begin}, {previous.End}] and '{entry.Name}' [{entry.Begin}, {entry.End}] overlap.");
            }
            if (entry.Begin > expectedBegin)
            {
                throw Invalid(path, $"bytes [{expectedBegin}, {entry.Begin}) of the data section belong to no tensor.");
            }
            if (entry.End > dataLength)
            {
                throw Invalid(path, $"tensor '{entry.Name}' ends at data offset {entry.End} but the data section has only {dataLength} bytes (truncated " +
                    $"file?).");
            }
            expectedBegin = entry.End;
            previous = entry;
        }
        if (expectedBegin != dataLength)
        {
            throw Invalid(path, $"the data section has {dataLength} bytes but the tensors cover only {expectedBegin} (trailing bytes).");
        }
    }
}
