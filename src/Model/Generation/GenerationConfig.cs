using System.Text.Json;

namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>What this library reads from a Hugging Face <c>generation_config.json</c>: the end-of-sequence ids.</summary>
public static class GenerationConfig
{
    /// <summary>The file name in a model folder.</summary>
    public const string FileName = "generation_config.json";

    /// <summary>
    /// <c>eos_token_id</c> (a number or a list of numbers) of <paramref name="folder"/>'s <c>generation_config.json</c>;
    /// empty when the file or the key is absent or null.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not JSON, or <c>eos_token_id</c> is neither a non-negative integer nor a list of them; the message
    /// names the file.</exception>
    public static IReadOnlyList<int> ReadEosTokenIds(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) return Array.Empty<int>();
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("eos_token_id",
                out var eos) || eos.ValueKind == JsonValueKind.Null)
                return Array.Empty<int>();
            var ids = eos.ValueKind == JsonValueKind.Array ? eos.EnumerateArray().Select(Id).ToArray() : new[] { Id(eos) };
            return ids;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {e.Message}", e);
        }

        int Id(JsonElement e) => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int id) && id >= 0
            ? id
            : throw new InvalidDataException($"'{path}': eos_token_id must be a non-negative integer or a list of them; got {e.GetRawText()}.");
    }
}
