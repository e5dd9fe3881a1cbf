using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Text;
using Microsoft.ML.Qwen3Moe.Storage;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>Writes a Hugging Face model folder that <see cref="CheckpointFolder"/> (and Hugging Face) load.</summary>
internal static partial class CheckpointFolderWriter
{
    /// <summary>
    /// Writes <c>model.safetensors</c> when all tensor data fits in <paramref name="maxShardBytes"/>, otherwise
    /// <c>model-0000i-of-0000N.safetensors</c> shards plus <c>model.safetensors.index.json</c>
    /// (<c>{"metadata":{"total_size":...},"weight_map":{key:file}}</c>), and the <paramref name="extraTextFiles"/>.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Shards are filled greedily in the given order, as Hugging Face does: a shard is closed when the next tensor would
    /// take its data beyond <paramref name="maxShardBytes"/>; a tensor larger than the limit gets a shard of its own.
    /// </para>
    /// <para>
    /// Atomic as a folder (<see cref="FolderSwap"/>): everything is written (and fsynced) into a hidden sibling temp folder,
    /// then swapped in: the existing folder is renamed away, the new one renamed into place, the parent folder fsynced,
    /// the old one deleted. A crash at any point leaves either the old complete folder or the new complete folder at
    /// <paramref name="folder"/>, or (between the two renames) nothing there and both complete folders beside it as
    /// hidden <c>.name.*.old</c> / <c>.name.*.tmp</c> siblings; never a mix that loads. The next write to the folder puts
    /// such an <c>.old</c> folder back first and removes the leftovers of killed writes. If this method throws, the temp
    /// folder is removed and the old folder is where it was.
    /// </para>
    /// <para>
    /// The new folder holds exactly the files written here; nothing is carried over from the old one. So an existing
    /// folder is only replaced when it is a model folder this writer could have written: regular files named as a
    /// checkpoint (<c>model.safetensors</c>, <c>model-0000i-of-0000N.safetensors</c>, the index), as
    /// <paramref name="extraTextFiles"/>, or as the other files of a Hugging Face model folder (<see cref="ModelFolderFileNames"/>).
    /// Anything else (another file such as <c>adapter_model.safetensors</c>, a subfolder, a symbolic link) makes it refuse,
    /// naming what is there, before anything is written: such a folder is not ours to delete.
    /// </para>
    /// </remarks>
    /// <param name="folder">The model folder to create or replace.</param>
    /// <param name="tensors">Names and tensors, in the order to write them (any device and supported dtype; see <see cref="SafetensorsWriter.Write"/>).</param>
    /// <param name="maxShardBytes">Largest tensor data per shard, in bytes (&gt; 0).</param>
    /// <param name="extraTextFiles">File name to UTF-8 text (e.g. <c>config.json</c>); names must be plain file names
    /// other than the checkpoint's own.</param>
    /// <exception cref="IOException"><paramref name="folder"/> is a file or a symbolic link, or holds files this writer
    /// does not write (named in the message); nothing was changed.</exception>
    public static void Write(string folder, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, long maxShardBytes,
        IReadOnlyDictionary<string, string>? extraTextFiles = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        extraTextFiles ??= new Dictionary<string, string>();
        foreach (var name in extraTextFiles.Keys)
        {
            CheckExtraFileName(name);
        }

        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        var parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{folder}' has no parent folder.", nameof(folder));
        if (File.Exists(full))
        {
            throw new IOException($"'{full}' is a file, not a folder.");
        }
        Directory.CreateDirectory(parent);

        FolderSwap.RemoveLeftovers(parent, n => n == Path.GetFileName(full), log: null);
        CheckReplaceable(full, extraTextFiles);
        var staging = FolderSwap.CreateStaging(full);
        try
        {
            WriteShards(staging, SafetensorsWriter.CheckNames(tensors), maxShardBytes);
            foreach (var (name, text) in extraTextFiles)
            {
                AtomicFile.Write(Path.Combine(staging, name), stream => stream.Write(Encoding.UTF8.GetBytes(text)));
            }
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
        FolderSwap.SwapIn(full, staging);
    }

    /// <summary>
    /// The files of a Hugging Face model folder besides the weights that this library's exports write (config and
    /// tokenizer files) or that Hugging Face writes beside them; a folder holding only these and checkpoint files may be replaced.
    /// </summary>
    public static IReadOnlySet<string> ModelFolderFileNames { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
        "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
    };

    /// <summary>Refuses to replace <paramref name="full"/> unless it is absent or holds only regular files a write like this one produces.</summary>
    private static void CheckReplaceable(string full, IReadOnlyDictionary<string, string> extraTextFiles)
    {
        if (!Directory.Exists(full)) return;
        if (new DirectoryInfo(full).LinkTarget is { } target)
            throw new IOException($"'{full}' is a symbolic link (to '{target}'), not a model folder: export into a real folder.");
        var foreign = new DirectoryInfo(full).EnumerateFileSystemInfos()
            .Where(e => e.LinkTarget is not null || e is not FileInfo
                || !(IsOwnCheckpointFile(e.Name) || extraTextFiles.ContainsKey(e.Name) || ModelFolderFileNames.Contains(e.Name)))
            .Select(e => e.LinkTarget is not null ? $"'{e.Name}' (a symbolic link)" : e is DirectoryInfo ? $"'{e.Name}/' (a folder)" : $"'{e.Name}'")
            .Order(StringComparer.Ordinal)
            .ToList();
        if (foreign.Count > 0)
            throw new IOException($"'{full}' holds {(foreign.Count == 1 ? "an entry" : $"{foreign.Count} entries")} that a model export does not write: " +
                $"{string.Join(", ", foreign.Take(10))}{(foreign.Count > 10 ? ", ..." : "")}. Replacing the folder would delete them, so nothing was " +
                $"written: " +
                "export into a new or empty folder, or move them away.");
    }

    private static void WriteShards(string staging, List<KeyValuePair<string, torch.Tensor>> items, long maxShardBytes)
    {
        var shards = new List<List<KeyValuePair<string, torch.Tensor>>> { new() };
        long shardBytes = 0, totalBytes = 0;
        foreach (var item in items)
        {
            var bytes = SafetensorsWriter.DataBytes(item.Value);
            if (shards[^1].Count > 0 && shardBytes + bytes > maxShardBytes)
            {
                shards.Add([]);
                shardBytes = 0;
            }
            shards[^1].Add(item);
            shardBytes += bytes;
            totalBytes += bytes;
        }

        if (shards.Count == 1)
        {
            SafetensorsWriter.Write(Path.Combine(staging, CheckpointIndex.SingleFileName), shards[0]);
            return;
        }

        var weightMap = new List<KeyValuePair<string, string>>();
        for (var i = 0; i < shards.Count; i++)
        {
            var shardName = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            SafetensorsWriter.Write(Path.Combine(staging, shardName), shards[i]);
            weightMap.AddRange(shards[i].Select(t => KeyValuePair.Create(t.Key, shardName)));
        }
        AtomicFile.Write(Path.Combine(staging, CheckpointIndex.FileName), stream => WriteIndex(stream, totalBytes, weightMap));
    }

    private static void WriteIndex(Stream stream, long totalBytes, List<KeyValuePair<string, string>> weightMap)
    {
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        json.WriteStartObject();
        json.WriteStartObject("metadata");
        json.WriteNumber("total_size", totalBytes);
        json.WriteEndObject();
        json.WriteStartObject("weight_map");
        foreach (var (key, shard) in weightMap)
        {
            json.WriteString(key, shard);
        }
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static bool IsCheckpointFile(string name) =>
        name.EndsWith(".safetensors", StringComparison.Ordinal) || name == CheckpointIndex.FileName;

    /// <summary>A name this writer gives a weights file or the index.</summary>
    private static bool IsOwnCheckpointFile(string name) =>
        name == CheckpointIndex.SingleFileName || name == CheckpointIndex.FileName || ShardName().IsMatch(name);

    [GeneratedRegex(@"^model-[0-9]{5}-of-[0-9]{5}\.safetensors$", RegexOptions.CultureInvariant)]
    private static partial Regex ShardName();

    private static void CheckExtraFileName(string name)
    {
        if (string.IsNullOrEmpty(name) || name != Path.GetFileName(name) || name is "." or ".."
            || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || IsCheckpointFile(name))
        {
            throw new ArgumentException($"'{name}' cannot be an extra file of a checkpoint folder: it must be a plain file name other than the checkpoint's " +
                $"own files.", "extraTextFiles");
        }
    }
}
