using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Storage;

namespace Microsoft.ML.Qwen3Moe.Training.Checkpoints;

/// <summary>
/// <c>manifest.json</c> of a training checkpoint folder: the step, data position and trainer layout, plus the size and
/// SHA-256 of every other file. It is written last, so its presence (with matching files) marks a complete checkpoint.
/// </summary>
internal sealed class TrainingCheckpointManifest
{
    /// <summary>The manifest's file name inside a checkpoint folder.</summary>
    public const string FileName = "manifest.json";

    private const string Format = "Microsoft.ML.Qwen3Moe training checkpoint";
    private const int Version = 1;
    private const int MaxBytes = 64 << 20;

    /// <summary>Optimizer steps taken when the checkpoint was written.</summary>
    public required int Step { get; init; }

    /// <summary>Where the next batch comes from.</summary>
    public required DataPosition Position { get; init; }

    /// <summary>Whether the trainer kept float32 master weights.</summary>
    public required bool MasterWeights { get; init; }

    /// <summary>Names of the trained parameters, in optimizer order.</summary>
    public required IReadOnlyList<string> TrainedParameters { get; init; }

    /// <summary>The trainer's options as text (for people reading the folder; not checked on restore).</summary>
    public required string TrainingOptions { get; init; }

    /// <summary>Every other file of the folder: name to (bytes, lowercase hex SHA-256).</summary>
    public required IReadOnlyDictionary<string, (long Bytes, string Sha256)> Files { get; init; }

    /// <summary>Size and SHA-256 of a file.</summary>
    public static (long Bytes, string Sha256) Describe(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20, FileOptions.SequentialScan);
        return (stream.Length, Convert.ToHexStringLower(SHA256.HashData(stream)));
    }

    /// <summary>Writes the manifest into <paramref name="folder"/> atomically (it must be the last file written).</summary>
    public void WriteTo(string folder) => AtomicFile.Write(Path.Combine(folder, FileName), stream =>
    {
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        json.WriteStartObject();
        json.WriteString("format", Format);
        json.WriteNumber("version", Version);
        json.WriteNumber("step", Step);
        json.WriteStartObject("data_position");
        json.WriteNumber("epoch", Position.Epoch);
        json.WriteNumber("batch_index", Position.BatchIndex);
        if (Position.Cursor is null) json.WriteNull("cursor");
        else json.WriteString("cursor", Position.Cursor);
        json.WriteEndObject();
        json.WriteBoolean("float32_master_weights", MasterWeights);
        json.WriteStartArray("trained_parameters");
        foreach (var name in TrainedParameters) json.WriteStringValue(name);
        json.WriteEndArray();
        json.WriteString("training_options", TrainingOptions);
        json.WriteStartObject("files");
        foreach (var (name, (bytes, sha)) in Files)
        {
            json.WriteStartObject(name);
            json.WriteNumber("bytes", bytes);
            json.WriteString("sha256", sha);
            json.WriteEndObject();
        }
        json.WriteEndObject();
        json.WriteEndObject();
    });

    /// <summary>
    /// Reads the manifest of <paramref name="folder"/> and checks that every file it lists is there with its recorded size
    /// (and SHA-256 when <paramref name="verifyHashes"/>), and, when <paramref name="expectedStep"/> is given (the step the
    /// folder is named for), that the manifest is of that step.
    /// </summary>
    /// <exception cref="InvalidDataException">The checkpoint is incomplete or damaged; the message names the file and the problem.</exception>
    public static TrainingCheckpointManifest ReadVerified(string folder, bool verifyHashes, int? expectedStep = null)
    {
        var path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) throw Invalid(folder, $"it has no {FileName} (an incomplete or foreign folder).");
        var bytes = ReadSmallFile(path);
        var manifest = Parse(path, bytes);
        if (expectedStep is { } expected && manifest.Step != expected)
            throw Invalid(folder, $"{FileName} says step {manifest.Step}, but the folder is named for step {expected} (damaged or tampered).");
        foreach (var (name, (size, sha)) in manifest.Files)
        {
            var file = Path.Combine(folder, name);
            if (!File.Exists(file)) throw Invalid(folder, $"'{name}', listed in {FileName}, is missing.");
            long actual = new FileInfo(file).Length;
            if (actual != size) throw Invalid(folder, $"'{name}' has {actual} bytes; {FileName} says {size}.");
            if (verifyHashes && Describe(file).Sha256 != sha) throw Invalid(folder, $"'{name}' does not match its SHA-256 in {FileName} (damaged).");
        }
        return manifest;
    }

    /// <summary>The exception for a damaged or incomplete checkpoint folder.</summary>
    public static InvalidDataException Invalid(string folder, string problem, Exception? inner = null) =>
        new($"Training checkpoint '{folder}': {problem}", inner);

    private static byte[] ReadSmallFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (stream.Length > MaxBytes) throw
            Invalid(Path.GetDirectoryName(path)!, $"{FileName} has {stream.Length} bytes, more than the {MaxBytes}-byte limit.");
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    private static TrainingCheckpointManifest Parse(string path, byte[] utf8)
    {
        var folder = Path.GetDirectoryName(path)!;
        InvalidDataException Bad(string problem, Exception? inner = null) => Invalid(folder, $"{FileName}: {problem}", inner);
        using var doc = UntrustedJson.Parse(utf8, maxDepth: 8, "the manifest", Bad);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw Bad("the top level is not an object.");
        var props = UntrustedJson.UniqueProperties(root, "the manifest", Bad).ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal);
        JsonElement Get(IReadOnlyDictionary<string, JsonElement> from, string name, JsonValueKind kind, string where)
        {
            if (!from.TryGetValue(name, out var v)) throw Bad($"{where}'{name}' is missing.");
            if (v.ValueKind != kind && !(kind == JsonValueKind.True && v.ValueKind == JsonValueKind.False))
                throw Bad($"{where}'{name}' is {v.ValueKind}, expected {(kind == JsonValueKind.True ? "a boolean" : kind.ToString())}.");
            return v;
        }
        long Integer(IReadOnlyDictionary<string, JsonElement> from, string name, string where, long max)
        {
            var v = Get(from, name, JsonValueKind.Number, where);
            if (!v.TryGetInt64(out var n) || n < 0 || n > max) throw Bad($"{where}'{name}' = {v.GetRawText()} is not an integer in [0, {max}].");
            return n;
        }

        if (Get(props, "format", JsonValueKind.String, "").GetString() != Format) throw Bad($"'format' is not \"{Format}\".");
        var version = Integer(props, "version", "", int.MaxValue);
        if (version != Version) throw Bad($"version {version} is not supported (this library reads version {Version}).");
        int step = (int)Integer(props, "step", "", int.MaxValue - 1); // a trainer at int.MaxValue steps could not take another

        var posElement = Get(props, "data_position", JsonValueKind.Object, "");
        var pos = UntrustedJson.UniqueProperties(posElement, "'data_position'", Bad).ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal);
        var cursor = pos.TryGetValue("cursor", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
            : c.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined ? null : throw Bad("'data_position.cursor' is neither a string nor null.");
        var position = new DataPosition(Integer(pos, "epoch", "data_position.", long.MaxValue), Integer(pos, "batch_index", "data_position.", long.MaxValue),
            cursor);

        bool masters = Get(props, "float32_master_weights", JsonValueKind.True, "").GetBoolean();
        var trained = new List<string>();
        foreach (var e in Get(props, "trained_parameters", JsonValueKind.Array, "").EnumerateArray())
            trained.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Bad("'trained_parameters' holds a value that is not a string."));
        var options = Get(props, "training_options", JsonValueKind.String, "").GetString()!;

        var files = new Dictionary<string, (long, string)>(StringComparer.Ordinal);
        foreach (var f in UntrustedJson.UniqueProperties(Get(props, "files", JsonValueKind.Object, ""), "'files'", Bad))
        {
            if (f.Name != Path.GetFileName(f.Name) || f.Name is "" or "." or ".." or FileName || f.Name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
                throw Bad($"'files' names '{f.Name}', which is not a plain file name of the folder.");
            if (f.Value.ValueKind != JsonValueKind.Object) throw Bad($"'files.{f.Name}' is not an object.");
            var fp = UntrustedJson.UniqueProperties(f.Value, $"'files.{f.Name}'", Bad).ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal);
            var sha = Get(fp, "sha256", JsonValueKind.String, $"files.{f.Name}.").GetString()!;
            if (sha.Length != 64 || !sha.All(char.IsAsciiHexDigitLower)) throw Bad($"'files.{f.Name}.sha256' is not 64 lowercase hex digits.");
            files[f.Name] = (Integer(fp, "bytes", $"files.{f.Name}.", long.MaxValue), sha);
        }
        return new TrainingCheckpointManifest
        {
            Step = step, Position = position, MasterWeights = masters, TrainedParameters = trained, TrainingOptions = options, Files = files,
        };
    }
}
