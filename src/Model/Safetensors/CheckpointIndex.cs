using System.Text.Json;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>
/// The parsed <c>model.safetensors.index.json</c> of a sharded Hugging Face checkpoint:
/// <c>{"metadata": {...}, "weight_map": {"tensor key": "shard file name", ...}}</c>.
/// </summary>
/// <remarks>
/// Validation: valid UTF-8 JSON object no larger than <see cref="MaxIndexBytes"/>; no repeated property in the top level
/// or <c>weight_map</c>; <c>weight_map</c> present, an object of strings; each shard name a plain file name ending in
/// <c>.safetensors</c> (no folders, no <c>..</c>, so an index cannot point outside its folder); <c>metadata</c>, when
/// present, an object. Failures are <see cref="InvalidDataException"/>s naming the index file.
/// </remarks>
internal static class CheckpointIndex
{
    /// <summary>File name of the index in a sharded checkpoint folder.</summary>
    public const string FileName = "model.safetensors.index.json";

    /// <summary>File name of a single-file checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>Upper bound on the index size (real ones are well under 10 MB).</summary>
    public const long MaxIndexBytes = 100_000_000;

    /// <summary>Reads and validates an index; returns tensor key to shard file name, in file order.</summary>
    public static IReadOnlyDictionary<string, string> Read(string path)
    {
        RegularFile.Require(path);
        var length = new FileInfo(path).Length;
        if (length > MaxIndexBytes)
        {
            throw Invalid(path, $"the file has {length} bytes, more than the limit of {MaxIndexBytes}.");
        }
        UntrustedJson.Invalid invalid = (problem, inner) => Invalid(path, problem, inner);
        using (var document = UntrustedJson.Parse(RegularFile.ReadAllBytes(path, MaxIndexBytes), maxDepth: 64, "the file", invalid))
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Invalid(path, $"the file holds a JSON {root.ValueKind}, not an object.");
            }
            JsonElement? weightMap = null;
            foreach (var property in UntrustedJson.UniqueProperties(root, "the top level", invalid))
            {
                if (property.Name == "weight_map")
                {
                    weightMap = property.Value;
                }
                else if (property.Name == "metadata" && property.Value.ValueKind != JsonValueKind.Object)
                {
                    throw Invalid(path, $"'metadata' is a JSON {property.Value.ValueKind}, not an object.");
                }
            }
            if (weightMap is not { ValueKind: JsonValueKind.Object } map)
            {
                throw Invalid(path, weightMap is null ? "there is no 'weight_map'." : $"'weight_map' is a JSON {weightMap.Value.ValueKind}, not an object.");
            }

            var result = new OrderedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in UntrustedJson.UniqueProperties(map, "'weight_map'", invalid))
            {
                if (property.Value.ValueKind != JsonValueKind.String)
                {
                    throw Invalid(path, $"'weight_map' value for '{property.Name}' is a JSON {property.Value.ValueKind}, not a file name.");
                }
                result.Add(property.Name, CheckShardName(path, property.Name, property.Value.GetString()!));
            }
            return result;
        }
    }

    /// <summary>Builds the exception every index validation failure throws.</summary>
    public static InvalidDataException Invalid(string path, string problem, Exception? inner = null) =>
        new($"Invalid checkpoint index '{path}': {problem}", inner);

    private static string CheckShardName(string path, string key, string shard)
    {
        var plain = shard.Length > 0
            && shard.IndexOfAny(['/', '\\', ':', '\0']) < 0
            && shard.IndexOfAny(Path.GetInvalidFileNameChars()) < 0
            && shard != "." && shard != ".."
            && shard.EndsWith(".safetensors", StringComparison.Ordinal);
        if (!plain)
        {
            throw Invalid(path, $"'weight_map' names shard '{shard}' for '{key}', which is not a plain '.safetensors' file name in the same folder.");
        }
        return shard;
    }
}
