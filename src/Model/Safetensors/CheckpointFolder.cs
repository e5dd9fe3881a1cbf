using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>
/// A Hugging Face model folder opened for reading: either one <c>model.safetensors</c>, or
/// <c>model.safetensors.index.json</c> plus the shards it names.
/// </summary>
/// <remarks>
/// <see cref="Open"/> validates every header and cross-checks a sharded folder: every shard the index names exists and
/// is a valid safetensors file, every key is stored in the shard the index names, no key is stored in two shards, and
/// no shard stores a key the index does not list. A folder holding both <c>model.safetensors</c> and an index is
/// rejected as ambiguous. Shards stay open until <see cref="Dispose"/>; tensor data is read on demand.
/// </remarks>
internal sealed class CheckpointFolder : IDisposable
{
    private readonly string _folder;
    private readonly IReadOnlyDictionary<string, SafetensorsFile> _fileByKey;
    private readonly List<SafetensorsFile> _files;

    private CheckpointFolder(string folder, IReadOnlyDictionary<string, SafetensorsFile> fileByKey, List<SafetensorsFile> files)
    {
        _folder = folder;
        _fileByKey = fileByKey;
        _files = files;
        Keys = [.. fileByKey.Keys];
    }

    /// <summary>Every tensor key, in index order (sharded) or header order (single file).</summary>
    public IReadOnlyCollection<string> Keys { get; }

    /// <summary>Opens and validates a checkpoint folder.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">The folder has neither <c>model.safetensors</c> nor an index.</exception>
    /// <exception cref="InvalidDataException">The index, a shard, or their agreement is invalid; the message says which file and why.</exception>
    public static CheckpointFolder Open(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(full))
        {
            throw new DirectoryNotFoundException($"Checkpoint folder '{full}' does not exist.");
        }
        var single = Path.Combine(full, CheckpointIndex.SingleFileName);
        var index = Path.Combine(full, CheckpointIndex.FileName);
        return (File.Exists(single), File.Exists(index)) switch
        {
            (true, true) => throw new InvalidDataException(
                $"Checkpoint folder '{full}' holds both {CheckpointIndex.SingleFileName} and {CheckpointIndex.FileName}; " +
                "it is ambiguous which one is the model."),
            (true, false) => OpenSingle(full, single),
            (false, true) => OpenSharded(full, index),
            _ => throw new FileNotFoundException($"Checkpoint folder '{full}' has neither {CheckpointIndex.SingleFileName} nor {CheckpointIndex.FileName}."),
        };
    }

    /// <summary>Whether the checkpoint holds <paramref name="key"/>.</summary>
    public bool Contains(string key) => _fileByKey.ContainsKey(key);

    /// <summary>The header entry of <paramref name="key"/>.</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint has no such key; the message names the key and folder.</exception>
    public SafetensorsEntry GetEntry(string key) => FileOf(key).Entries[key];

    /// <summary>Reads <paramref name="key"/> into a new CPU tensor with the stored dtype and shape.</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint has no such key; the message names the key and folder.</exception>
    public torch.Tensor ReadTensor(string key) => FileOf(key).ReadTensor(key);

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var file in _files)
        {
            file.Dispose();
        }
    }

    private SafetensorsFile FileOf(string key) =>
        _fileByKey.TryGetValue(key, out var file)
            ? file
            : throw new KeyNotFoundException($"Checkpoint folder '{_folder}' has no tensor '{key}'.");

    private static CheckpointFolder OpenSingle(string folder, string path)
    {
        var file = SafetensorsFile.Open(path);
        return new CheckpointFolder(folder, file.Entries.Keys.ToDictionary(k => k, _ => file, StringComparer.Ordinal), [file]);
    }

    private static CheckpointFolder OpenSharded(string folder, string indexPath)
    {
        var weightMap = CheckpointIndex.Read(indexPath);
        var shards = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var shard in weightMap.Values.Distinct(StringComparer.Ordinal))
            {
                var shardPath = Path.Combine(folder, shard);
                if (!File.Exists(shardPath))
                {
                    throw CheckpointIndex.Invalid(indexPath, $"shard '{shard}' does not exist.");
                }
                shards.Add(shard, SafetensorsFile.Open(shardPath));
            }

            var fileByKey = new OrderedDictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (key, shard) in weightMap)
            {
                var file = shards[shard];
                if (!file.Entries.ContainsKey(key))
                {
                    throw CheckpointIndex.Invalid(indexPath, $"tensor '{key}' is mapped to shard '{shard}', which does not hold it.");
                }
                fileByKey.Add(key, file);
            }
            foreach (var (shard, file) in shards)
            {
                foreach (var key in file.Entries.Keys)
                {
                    if (!weightMap.TryGetValue(key, out var named))
                    {
                        throw CheckpointIndex.Invalid(indexPath, $"shard '{shard}' holds tensor '{key}', which the index does not list.");
                    }
                    if (named != shard)
                    {
                        throw CheckpointIndex.Invalid(indexPath, $"tensor '{key}' is stored in both '{named}' and '{shard}'.");
                    }
                }
            }
            return new CheckpointFolder(folder, fileByKey, [.. shards.Values]);
        }
        catch
        {
            foreach (var file in shards.Values)
            {
                file.Dispose();
            }
            throw;
        }
    }
}
