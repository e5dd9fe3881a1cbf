using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Safetensors;
using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>
/// <see cref="CheckpointFolderWriter"/> writes single-file or sharded Hugging Face folders that
/// <see cref="CheckpointFolder"/> reads back, and replaces an existing folder all at once or not at all.
/// </summary>
public class CheckpointFolderWriterTests : CheckpointTestBase
{
    private static List<KeyValuePair<string, torch.Tensor>> Tensors(int count, int floats, int seed) =>
        Enumerable.Range(0, count)
            .Select(i => KeyValuePair.Create($"layers.{i}.weight", CheckpointTestFiles.RandomTensor(torch.ScalarType.Float32, [floats], new Random(seed + i))))
            .ToList();

    [Test]
    public void WritesOneFileWhenEverythingFits()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        var tensors = Tensors(3, 10, seed: 1);

        CheckpointFolderWriter.Write(folder, tensors, maxShardBytes: 120, new Dictionary<string, string> { ["config.json"] = "{\"x\":1}" });

        Assert.That(Directory.GetFiles(folder).Select(Path.GetFileName), Is.EquivalentTo(new[] { "model.safetensors", "config.json" }));
        Assert.That(File.ReadAllText(Path.Combine(folder, "config.json")), Is.EqualTo("{\"x\":1}"));
        AssertReadsBack(folder, tensors);
    }

    [Test]
    public void ShardsBySizeLimitAndWritesHuggingFaceIndex()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        // Five 400-byte tensors and a 1000-byte limit: shards of 2, 2 and 1 tensors.
        var tensors = Tensors(5, 100, seed: 2);

        CheckpointFolderWriter.Write(folder, tensors, maxShardBytes: 1000);

        string[] shards = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"];
        Assert.That(Directory.GetFiles(folder).Select(Path.GetFileName), Is.EquivalentTo(shards.Append(CheckpointIndex.FileName)));
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, CheckpointIndex.FileName)));
        Assert.That(index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64(), Is.EqualTo(2000));
        var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => (p.Name, p.Value.GetString())).ToList();
        Assert.That(weightMap, Is.EqualTo(new[]
        {
            ("layers.0.weight", shards[0]), ("layers.1.weight", shards[0]),
            ("layers.2.weight", shards[1]), ("layers.3.weight", shards[1]),
            ("layers.4.weight", shards[2]),
        }));
        using (var shard = SafetensorsFile.Open(Path.Combine(folder, shards[1])))
        {
            Assert.That(shard.Metadata["format"], Is.EqualTo("pt"));
        }
        AssertReadsBack(folder, tensors);
    }

    [Test]
    public void TensorLargerThanTheLimitGetsAShardOfItsOwn()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        var tensors = new List<KeyValuePair<string, torch.Tensor>>
        {
            new("small", torch.zeros(2)), new("big", torch.ones(100)), new("small2", torch.zeros(2)),
        };

        CheckpointFolderWriter.Write(folder, tensors, maxShardBytes: 16);

        using var checkpoint = CheckpointFolder.Open(folder);
        Assert.That(Directory.GetFiles(folder, "*.safetensors"), Has.Length.EqualTo(3));
        AssertReadsBack(folder, tensors);
    }

    [Test]
    public void ShardedFixtureRewrittenWithAnotherLimitReadsBackEqual()
    {
        using var original = CheckpointFolder.Open(CheckpointTestFiles.FixtureModel("mixed"));
        using var fixtureIndex = JsonDocument.Parse(File.ReadAllText(Path.Combine(CheckpointTestFiles.FixtureModel("mixed"), CheckpointIndex.FileName)));
        Assert.That(original.Keys, Is.EqualTo(fixtureIndex.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Name)));

        using var scope = torch.NewDisposeScope();
        var tensors = original.Keys.Select(k => KeyValuePair.Create(k, original.ReadTensor(k))).ToList();
        var folder = Files.PathOf("rewritten");
        CheckpointFolderWriter.Write(folder, tensors, maxShardBytes: 1_000_000);

        Assert.That(Directory.GetFiles(folder, "*.safetensors"), Has.Length.GreaterThan(1));
        AssertReadsBack(folder, tensors);
    }

    [Test]
    public void ReplacingAModelFolderLeavesExactlyTheNewFiles()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        CheckpointFolderWriter.Write(folder, Tensors(5, 100, seed: 3), maxShardBytes: 1000,
            new Dictionary<string, string> { ["config.json"] = "old", ["tokenizer.json"] = "tok" });
        Assert.That(Directory.GetFiles(folder, "model-*.safetensors"), Has.Length.GreaterThan(1));
        var tensors = Tensors(2, 10, seed: 4);

        CheckpointFolderWriter.Write(folder, tensors, maxShardBytes: 1000, new Dictionary<string, string> { ["config.json"] = "new" });

        Assert.That(Directory.GetFileSystemEntries(folder).Select(Path.GetFileName), Is.EquivalentTo(new[] { "model.safetensors", "config.json" }),
            "old shards, index and model-folder files the new write does not have are gone; nothing is carried over");
        Assert.That(File.ReadAllText(Path.Combine(folder, "config.json")), Is.EqualTo("new"));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.EqualTo(new[] { folder }), "no temp or old folder left beside it");
        AssertReadsBack(folder, tensors);
    }

    /// <summary>
    /// A folder holding anything a write does not produce (an unrelated adapter, a subfolder, symbolic links out of the
    /// folder) is not replaced: the write refuses, naming every such entry, and neither the folder nor the link targets change.
    /// </summary>
    [Test]
    public void AFolderWithFilesItDidNotWriteIsRefusedAndLinksAreNeverFollowed()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        CheckpointFolderWriter.Write(folder, Tensors(2, 10, seed: 3), maxShardBytes: 1000, new Dictionary<string, string> { ["config.json"] = "old" });
        var outside = Directory.CreateDirectory(Files.PathOf("outside")).FullName;
        File.WriteAllText(Path.Combine(outside, "hostname"), "secret host");
        Directory.CreateDirectory(Path.Combine(outside, "ssl", "private"));
        File.WriteAllText(Path.Combine(outside, "ssl", "private", "key.pem"), "secret key");
        File.CreateSymbolicLink(Path.Combine(folder, "h"), Path.Combine(outside, "hostname"));
        Directory.CreateSymbolicLink(Path.Combine(folder, "ssl_link"), Path.Combine(outside, "ssl"));
        File.WriteAllText(Path.Combine(folder, "adapter_model.safetensors"), "someone else's adapter");
        Directory.CreateDirectory(Path.Combine(folder, "notes"));
        var before = Snapshot(Files.Root);

        var e = Assert.Throws<IOException>(() => CheckpointFolderWriter.Write(folder, Tensors(2, 10, seed: 4), maxShardBytes: 1000,
            new Dictionary<string, string> { ["config.json"] = "new" }))!;

        Assert.That(e.Message, Does.Contain("'adapter_model.safetensors'").And.Contain("'h' (a symbolic link)").And.Contain("'ssl_link' (a symbolic link)")
            .And.Contain("'notes/' (a folder)").And.Contain(folder));
        Assert.That(Snapshot(Files.Root), Is.EqualTo(before), "nothing changed, nothing copied");
        Assert.That(Directory.GetFileSystemEntries(Files.Root).Order(), Is.EqualTo(new[] { folder, outside }), "no temp folder left");
    }

    [Test]
    public void ASymbolicLinkAsTheFolderIsRefused()
    {
        using var scope = torch.NewDisposeScope();
        var real = Directory.CreateDirectory(Files.PathOf("real")).FullName;
        var link = Files.PathOf("model");
        Directory.CreateSymbolicLink(link, real);
        var e = Assert.Throws<IOException>(() => CheckpointFolderWriter.Write(link, Tensors(1, 2, seed: 3), 1000))!;
        Assert.That(e.Message, Does.Contain("symbolic link"));
        Assert.That(Directory.GetFileSystemEntries(real), Is.Empty);
    }

    /// <summary>
    /// What a killed write leaves (its staging folder, and the old folder when killed between the two renames of the swap)
    /// is resolved by the next write: the old folder is put back first, staging folders of ended processes are removed,
    /// those of a live process (here: this one) are left alone.
    /// </summary>
    [Test]
    public void LeftoversOfKilledWritesAreCleanedUpByTheNextWrite()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        var old = Tensors(2, 10, seed: 3);
        CheckpointFolderWriter.Write(folder, old, maxShardBytes: 1000, new Dictionary<string, string> { ["config.json"] = "old" });
        const string deadPid = "99999999"; // above Linux's largest pid (2^22)
        var deadStaging = Files.PathOf($".model.{deadPid}-{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(deadStaging);
        File.WriteAllText(Path.Combine(deadStaging, "model.safetensors"), "half written");
        var liveStaging = Files.PathOf($".model.{Environment.ProcessId}-{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(liveStaging);
        var oldName = Files.PathOf($".model.{deadPid}-{Guid.NewGuid():N}.old");
        Directory.Move(folder, oldName); // killed between the two renames: nothing under the name
        var otherName = Files.PathOf($".other.{deadPid}-{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(otherName);

        // a write that fails still resolves the leftovers first: the old folder is back under its name
        Assert.Throws<InvalidOperationException>(() => CheckpointFolderWriter.Write(folder, ThrowingAfter(Tensors(1, 2, seed: 5)), maxShardBytes: 1000));
        Assert.That(Directory.GetFileSystemEntries(Files.Root).Order(), Is.EqualTo(new[] { liveStaging, otherName, folder }.Order()));
        AssertReadsBack(folder, old);
        Assert.That(File.ReadAllText(Path.Combine(folder, "config.json")), Is.EqualTo("old"));
    }

    private static IEnumerable<KeyValuePair<string, torch.Tensor>> ThrowingAfter(List<KeyValuePair<string, torch.Tensor>> tensors)
    {
        foreach (var tensor in tensors)
        {
            yield return tensor;
        }
        throw new InvalidOperationException("enumeration failed");
    }

    [Test]
    public void FailedWriteLeavesTheOldFolderIntactAndNoTempFolder()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        var old = Tensors(5, 100, seed: 5);
        CheckpointFolderWriter.Write(folder, old, maxShardBytes: 1000, new Dictionary<string, string> { ["config.json"] = "old" });
        var before = Snapshot(folder);

        Assert.Throws<InvalidOperationException>(() => CheckpointFolderWriter.Write(folder, ThrowingAfter(Tensors(2, 10, seed: 6)), maxShardBytes: 1000,
            new Dictionary<string, string> { ["config.json"] = "new" }));
        Assert.Throws<ArgumentException>(() =>
            CheckpointFolderWriter.Write(folder, [new("ok", torch.ones(2)), new("bad", torch.zeros(2, dtype: torch.complex64))], maxShardBytes: 4));

        Assert.That(Snapshot(folder), Is.EqualTo(before));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.EqualTo(new[] { folder }));
        AssertReadsBack(folder, old);
    }

    [Test]
    public void FailedFirstWriteCreatesNothing()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        Assert.Throws<InvalidOperationException>(() => CheckpointFolderWriter.Write(folder, ThrowingAfter(Tensors(2, 10, seed: 7)), maxShardBytes: 1000));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.Empty);
    }

    [TestCase("model.safetensors")]
    [TestCase("model-00001-of-00002.safetensors")]
    [TestCase(CheckpointIndex.FileName)]
    [TestCase("../config.json")]
    [TestCase("sub/config.json")]
    [TestCase("")]
    public void ExtraFileNameThatCouldClashOrEscapeIsRejected(string name)
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        Assert.Throws<ArgumentException>(() =>
            CheckpointFolderWriter.Write(folder, Tensors(1, 2, seed: 8), 1000, new Dictionary<string, string> { [name] = "x" }));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.Empty);
    }

    [TestCase(0L)]
    [TestCase(-1L)]
    public void NonPositiveShardLimitIsRejected(long limit)
    {
        using var scope = torch.NewDisposeScope();
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointFolderWriter.Write(Files.PathOf("model"), Tensors(1, 2, seed: 9), limit));
    }

    private static Dictionary<string, byte[]> Snapshot(string folder) =>
        Directory.GetFiles(folder, "*", SearchOption.AllDirectories).ToDictionary(f => Path.GetRelativePath(folder, f), File.ReadAllBytes);

    private static void AssertReadsBack(string folder, List<KeyValuePair<string, torch.Tensor>> tensors)
    {
        using var checkpoint = CheckpointFolder.Open(folder);
        Assert.That(checkpoint.Keys, Is.EqualTo(tensors.Select(t => t.Key)));
        foreach (var (name, expected) in tensors)
        {
            using var scope = torch.NewDisposeScope();
            Assert.That(checkpoint.GetEntry(name).Shape, Is.EqualTo(expected.shape), name);
            CheckpointTestFiles.AssertBitEqual(expected, checkpoint.ReadTensor(name), name);
        }
    }
}
