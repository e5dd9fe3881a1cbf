using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Safetensors;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// Where a LoRA model's base lives and what it looked like: the folder's full path, the sizes of <c>config.json</c>, the
/// safetensors files and the index, and the SHA-256 of <c>config.json</c> and the index. A LoRA model's ML.NET zip holds
/// this instead of the base weights; loading checks the folder still matches, so adapters are never applied to another model.
/// </summary>
/// <param name="Path">Full path of the base Hugging Face folder.</param>
/// <param name="FileSizes">Size in bytes of each fingerprinted file (config, index, safetensors), by name.</param>
/// <param name="Sha256">SHA-256 (hex) of <c>config.json</c> and, when present, the index, by name.</param>
internal sealed record BaseModelReference(string Path, SortedDictionary<string, long> FileSizes, SortedDictionary<string, string> Sha256)
{
    /// <summary>Stream/file name in a saved model.</summary>
    public const string FileName = "base_model.json";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Fingerprints the Hugging Face folder <paramref name="folder"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    public static BaseModelReference Of(string folder)
    {
        var full = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(folder));
        if (!Directory.Exists(full)) throw new DirectoryNotFoundException($"The base model folder '{full}' does not exist.");
        var sizes = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var hashes = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(full))
        {
            var name = System.IO.Path.GetFileName(file);
            bool hashed = name is "config.json" || name == CheckpointIndex.FileName;
            if (!hashed && !name.EndsWith(".safetensors", StringComparison.Ordinal)) continue;
            sizes[name] = new FileInfo(file).Length;
            if (hashed)
            {
                using var s = File.OpenRead(file);
                hashes[name] = Convert.ToHexString(SHA256.HashData(s)).ToLowerInvariant();
            }
        }
        return new BaseModelReference(full, sizes, hashes);
    }

    /// <summary>Checks that the folder at <see cref="Path"/> is still the base this reference describes.</summary>
    /// <exception cref="FileNotFoundException">The base folder is gone; the message names it and what was expected.</exception>
    /// <exception cref="InvalidDataException">The folder differs; the message names the first difference and both values.</exception>
    public void Verify()
    {
        string Expected() => $"{FileSizes.Count} file(s), config.json sha256 {Sha256.GetValueOrDefault("config.json", "?")}";
        if (!Directory.Exists(Path))
            throw new FileNotFoundException($"This LoRA model's base model folder '{Path}' is missing (expected {Expected()}). Put the base model back " +
                $"there, or load the adapter onto it with LoadHuggingFace(basePath, adapterPath: ...).", Path);
        var now = Of(Path);
        foreach (var (name, size) in FileSizes)
        {
            if (!now.FileSizes.TryGetValue(name, out var actual))
                throw new InvalidDataException($"This LoRA model's base model '{Path}' has changed: '{name}' ({size} bytes when the adapters were " +
                    $"trained) is missing.");
            if (actual != size)
                throw new InvalidDataException($"This LoRA model's base model '{Path}' has changed: '{name}' is {actual} bytes, it was {size} bytes when " +
                    $"the adapters were trained.");
        }
        var extra = now.FileSizes.Keys.FirstOrDefault(k => !FileSizes.ContainsKey(k));
        if (extra is not null) throw new InvalidDataException($"This LoRA model's base model '{Path}' has changed: it has '{extra}', which it did not " +
            $"have when the adapters were trained ({Expected()}).");
        foreach (var (name, hash) in Sha256)
            if (now.Sha256.GetValueOrDefault(name) != hash)
                throw new InvalidDataException($"This LoRA model's base model '{Path}' has changed: '{name}' has sha256 " +
                    $"{now.Sha256.GetValueOrDefault(name, "?")}, it was {hash} when the adapters were trained.");
    }

    /// <summary>Writes the reference as JSON.</summary>
    public void WriteTo(Stream stream) => JsonSerializer.Serialize(stream, this, Json);

    /// <summary>Reads a reference written by <see cref="WriteTo"/>.</summary>
    /// <exception cref="FormatException">Not a valid reference.</exception>
    public static BaseModelReference ReadFrom(Stream stream)
    {
        try
        {
            var r = JsonSerializer.Deserialize<BaseModelReference>(stream, Json);
            if (r is null || string.IsNullOrEmpty(r.Path) || r.FileSizes is null || r.Sha256 is null) throw new FormatException($"{FileName}: missing fields.");
            return r;
        }
        catch (JsonException e)
        {
            throw new FormatException($"{FileName}: invalid JSON ({e.Message}).", e);
        }
    }
}
