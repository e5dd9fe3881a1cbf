using System.Text.Json;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// The first stream of a saved model: this format's version, the files that follow (a Hugging Face folder: config,
/// safetensors, tokenizer files) and the scoring settings. JSON, so a zip can be inspected by hand.
/// </summary>
/// <param name="FormatVersion">Version of this layout (1).</param>
/// <param name="Files">Names of the binary streams holding the Hugging Face folder's files.</param>
/// <param name="Scoring">Input/output columns, max length, batch and precision.</param>
internal sealed record ModelManifest(int FormatVersion, string[] Files, Qwen3MoeScoringOptions Scoring)
{
    /// <summary>Name of the manifest stream in the slot.</summary>
    public const string StreamName = "Qwen3Moe.manifest.json";

    /// <summary>The version this build writes and reads.</summary>
    public const int CurrentVersion = 1;

    private static readonly JsonSerializerOptions Json = new() { IncludeFields = true, WriteIndented = true };

    public void WriteTo(Stream stream) => JsonSerializer.Serialize(stream, this, Json);

    /// <exception cref="FormatException">Not a manifest, or another format version.</exception>
    public static ModelManifest ReadFrom(Stream stream)
    {
        ModelManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<ModelManifest>(stream, Json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"{StreamName}: invalid JSON ({e.Message}).", e);
        }
        if (manifest is null || manifest.Files is null || manifest.Scoring is null) throw new FormatException($"{StreamName}: missing fields.");
        if (manifest.FormatVersion != CurrentVersion)
            throw new FormatException($"{StreamName}: format version {manifest.FormatVersion}; this build reads version {CurrentVersion}.");
        foreach (var f in manifest.Files)
            if (string.IsNullOrEmpty(f) || f != Path.GetFileName(f)) throw new FormatException($"{StreamName}: invalid file name '{f}'.");
        return manifest;
    }
}
