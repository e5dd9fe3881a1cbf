using System.Security.Cryptography;
using System.Text.Json;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// The first stream of a saved model: this format's version, the files that follow (a Hugging Face folder: config,
/// safetensors, tokenizer files) with each one's size and SHA-256, and the scoring settings. JSON, so a zip can be
/// inspected by hand.
/// </summary>
/// <param name="FormatVersion">Version of this layout (2: files carry size and SHA-256).</param>
/// <param name="Files">The binary streams holding the Hugging Face folder's files.</param>
/// <param name="Scoring">Input/output columns, max length, batch and precision.</param>
internal sealed record ModelManifest(int FormatVersion, ModelManifest.Entry[] Files, Qwen3MoeScoringOptions Scoring)
{
    /// <summary>Name of the manifest stream in the slot.</summary>
    public const string StreamName = "Qwen3Moe.manifest.json";

    /// <summary>The version this build writes and reads.</summary>
    public const int CurrentVersion = 2;

    /// <summary>Most bytes a manifest may hold (a real one holds about 1 KB).</summary>
    public const int MaxBytes = 1 << 20;

    private static readonly JsonSerializerOptions Json = new() { IncludeFields = true, WriteIndented = true };

    /// <summary>One file of the model folder.</summary>
    /// <param name="Name">File name (no folder).</param>
    /// <param name="Bytes">Its size.</param>
    /// <param name="Sha256">SHA-256 of its content, lower-case hex.</param>
    public sealed record Entry(string Name, long Bytes, string Sha256);

    /// <summary>The manifest of the files <paramref name="names"/> in <paramref name="folder"/>: size and SHA-256 of each.</summary>
    public static ModelManifest Describe(string folder, IEnumerable<string> names, Qwen3MoeScoringOptions scoring) =>
        new(CurrentVersion, names.Select(n =>
        {
            using var stream = File.OpenRead(Path.Combine(folder, n));
            return new Entry(n, stream.Length, Convert.ToHexStringLower(SHA256.HashData(stream)));
        }).ToArray(), scoring);

    public void WriteTo(Stream stream) => JsonSerializer.Serialize(stream, this, Json);

    /// <summary>Reads and validates a manifest: every value is checked as the options are checked when a model is made.</summary>
    /// <exception cref="FormatException">Not a manifest, another format version, or a value out of range; the message names it.</exception>
    public static ModelManifest ReadFrom(Stream stream)
    {
        ModelManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<ModelManifest>(CappedStream.ReadAll(stream, MaxBytes, StreamName), Json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"{StreamName}: invalid JSON ({e.Message}).", e);
        }
        catch (InvalidDataException e)
        {
            throw new FormatException(e.Message, e);
        }
        if (manifest is null || manifest.Files is null || manifest.Scoring is null) throw new FormatException($"{StreamName}: missing fields.");
        if (manifest.FormatVersion != CurrentVersion)
            throw new FormatException($"{StreamName}: format version {manifest.FormatVersion}; this build reads version {CurrentVersion} (save the model " +
                $"again with this build).");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in manifest.Files)
        {
            if (f is null || string.IsNullOrEmpty(f.Name) || f.Name != Path.GetFileName(f.Name) || f.Name is "." or ".." || !names.Add(f.Name))
                throw new FormatException($"{StreamName}: invalid or repeated file name '{f?.Name}'.");
            if (f.Bytes < 0) throw new FormatException($"{StreamName}: file '{f.Name}' has a negative size ({f.Bytes}).");
            if (f.Sha256 is null || f.Sha256.Length != 64 || !f.Sha256.All(char.IsAsciiHexDigitLower))
                throw new FormatException($"{StreamName}: file '{f.Name}' has no valid SHA-256 (64 lower-case hex digits), got '{f.Sha256}'.");
        }
        try
        {
            manifest.Scoring.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new FormatException($"{StreamName}: scoring settings: {e.Message}", e);
        }
        return manifest;
    }
}
