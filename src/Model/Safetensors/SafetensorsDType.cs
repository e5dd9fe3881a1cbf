using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>
/// The safetensors dtype strings this library reads and writes, and their TorchSharp counterparts.
/// </summary>
/// <remarks>
/// Safetensors also names dtypes TorchSharp 0.107 has no tensor type for (U16, U32, U64, the F8 variants, ...);
/// a header that uses one of those, or any other string, is rejected when the file is opened.
/// </remarks>
internal static class SafetensorsDType
{
    private static readonly (string Name, torch.ScalarType Type, int Size)[] Table =
    [
        ("BOOL", torch.ScalarType.Bool, 1),
        ("U8", torch.ScalarType.Byte, 1),
        ("I8", torch.ScalarType.Int8, 1),
        ("I16", torch.ScalarType.Int16, 2),
        ("I32", torch.ScalarType.Int32, 4),
        ("I64", torch.ScalarType.Int64, 8),
        ("F16", torch.ScalarType.Float16, 2),
        ("BF16", torch.ScalarType.BFloat16, 2),
        ("F32", torch.ScalarType.Float32, 4),
        ("F64", torch.ScalarType.Float64, 8),
    ];

    /// <summary>The supported dtype strings, for error messages.</summary>
    public static string SupportedList { get; } = string.Join(", ", Table.Select(t => t.Name));

    /// <summary>Looks up a header dtype string (case-sensitive, as the format requires).</summary>
    public static bool TryParse(string name, out torch.ScalarType type, out int elementSize)
    {
        foreach (var entry in Table)
        {
            if (string.Equals(entry.Name, name, StringComparison.Ordinal))
            {
                type = entry.Type;
                elementSize = entry.Size;
                return true;
            }
        }
        type = default;
        elementSize = 0;
        return false;
    }

    /// <summary>The header dtype string for a TorchSharp scalar type.</summary>
    /// <exception cref="ArgumentException">The type has no safetensors counterpart supported here.</exception>
    public static string FromScalarType(torch.ScalarType type, string tensorName)
    {
        foreach (var entry in Table)
        {
            if (entry.Type == type)
            {
                return entry.Name;
            }
        }
        throw new ArgumentException($"Tensor '{tensorName}' has dtype {type}, which cannot be written to safetensors (supported: {SupportedList}).");
    }
}
