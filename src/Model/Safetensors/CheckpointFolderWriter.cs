using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>Writes a Hugging Face model folder that <see cref="CheckpointFolder"/> (and Hugging Face) load.</summary>
internal static class CheckpointFolderWriter
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
    /// Atomic as a folder: everything is written (and fsynced) into a hidden sibling temp folder, then swapped in:
    /// the existing folder is renamed away, the new one renamed into place, the old one deleted. A crash at any point
    /// leaves either the old complete folder or the new complete folder at <paramref name="folder"/>, or (between the
    /// two renames) nothing there and both complete folders beside it as hidden <c>.name.*.old</c> / <c>.name.*.tmp</c>
    /// siblings; never a mix that loads. If this method throws, the temp folder is removed and the old folder is
    /// where it was.
    /// </para>
    /// <para>
    /// Files of the old folder that are not part of a checkpoint (anything but <c>*.safetensors</c> and the index, and
    /// not named in <paramref name="extraTextFiles"/>), such as tokenizer files, are copied into the new folder.
    /// </para>
    /// </remarks>
    /// <param name="folder">The model folder to create or replace.</param>
    /// <param name="tensors">Names and tensors, in the order to write them (any device and supported dtype; see <see cref="SafetensorsWriter.Write"/>).</param>
    /// <param name="maxShardBytes">Largest tensor data per shard, in bytes (&gt; 0).</param>
    /// <param name="extraTextFiles">File name to UTF-8 text (e.g. <c>config.json</c>); names must be plain file names
    /// other than the checkpoint's own.</param>
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

        var name0 = Path.GetFileName(full);
        var staging = Path.Combine(parent, $".{name0}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(staging);
        try
        {
            WriteShards(staging, SafetensorsWriter.CheckNames(tensors), maxShardBytes);
            foreach (var (name, text) in extraTextFiles)
            {
                AtomicFile.Write(Path.Combine(staging, name), stream => stream.Write(Encoding.UTF8.GetBytes(text)));
            }
            if (Directory.Exists(full))
            {
                CopyTree(full, staging, name => !IsCheckpointFile(name) && !extraTextFiles.ContainsKey(name));
            }
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
        SwapIn(full, staging, parent, name0);
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

    private static void CheckExtraFileName(string name)
    {
        if (string.IsNullOrEmpty(name) || name != Path.GetFileName(name) || name is "." or ".."
            || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || IsCheckpointFile(name))
        {
            throw new ArgumentException($"'{name}' cannot be an extra file of a checkpoint folder: it must be a plain file name other than the checkpoint's " +
                $"own files.", "extraTextFiles");
        }
    }

    private static void CopyTree(string from, string to, Func<string, bool> includeFile)
    {
        foreach (var file in Directory.EnumerateFiles(from))
        {
            if (includeFile(Path.GetFileName(file)))
            {
                File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
            }
        }
        foreach (var sub in Directory.EnumerateDirectories(from))
        {
            var target = Path.Combine(to, Path.GetFileName(sub));
            Directory.CreateDirectory(target);
            CopyTree(sub, target, _ => true);
        }
    }

    /// <summary>
    /// Moves the complete folder <paramref name="staging"/> to <paramref name="full"/> (a sibling named
    /// <paramref name="name"/> in <paramref name="parent"/>), replacing any folder there by two renames; see
    /// <see cref="Write"/> for what a crash in between leaves.
    /// </summary>
    internal static void SwapIn(string full, string staging, string parent, string name)
    {
        if (!Directory.Exists(full))
        {
            Directory.Move(staging, full);
            return;
        }
        var old = Path.Combine(parent, $".{name}.{Guid.NewGuid():N}.old");
        try
        {
            Directory.Move(full, old);
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
        try
        {
            Directory.Move(staging, full);
        }
        catch
        {
            Directory.Move(old, full);
            Directory.Delete(staging, recursive: true);
            throw;
        }
        Directory.Delete(old, recursive: true);
    }
}
