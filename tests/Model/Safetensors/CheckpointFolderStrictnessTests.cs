using System.Text.Json.Nodes;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Safetensors;
using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>
/// Files from outside (issue 7), sharded checkpoints: an index that disagrees with its shards, or is not a valid index,
/// is refused with an <see cref="InvalidDataException"/> naming the index and the problem.
/// </summary>
public class CheckpointFolderStrictnessTests : CheckpointTestBase
{
    private string _folder = null!;
    private string _index = null!;

    [SetUp]
    public void CreateShardedFolder()
    {
        _folder = Files.PathOf("model");
        _index = Path.Combine(_folder, CheckpointIndex.FileName);
        using var scope = torch.NewDisposeScope();
        // Three 16-byte tensors, 32-byte shards: a, b in shard 1 and c in shard 2.
        CheckpointFolderWriter.Write(_folder, [new("a", torch.zeros(4)), new("b", torch.ones(4)), new("c", torch.full(4, 2f))], maxShardBytes: 32);
    }

    private const string Shard1 = "model-00001-of-00002.safetensors";
    private const string Shard2 = "model-00002-of-00002.safetensors";

    [Test]
    public void UnmodifiedFolderOpens()
    {
        // Every case below edits this folder; it must be valid, so each rejection is due to the edit.
        using var folder = CheckpointFolder.Open(_folder);
        Assert.That(folder.Keys, Is.EqualTo(new[] { "a", "b", "c" }));
        Assert.That(folder.GetEntry("c").Shape, Is.EqualTo(new long[] { 4 }));
    }

    [Test]
    public void MissingShardIsRejected()
    {
        File.Delete(Path.Combine(_folder, Shard2));
        AssertRejected($"shard '{Shard2}' does not exist");
    }

    [Test]
    public void KeyMissingInItsNamedShardIsRejected()
    {
        EditIndex(map => map["c"] = Shard1);
        AssertRejected($"tensor 'c' is mapped to shard '{Shard1}', which does not hold it");
    }

    [Test]
    public void KeyStoredInTwoShardsIsRejected()
    {
        using var scope = torch.NewDisposeScope();
        SafetensorsWriter.Write(Path.Combine(_folder, Shard2), [new("c", torch.zeros(4)), new("a", torch.zeros(4))]);
        AssertRejected($"tensor 'a' is stored in both '{Shard1}' and '{Shard2}'");
    }

    [Test]
    public void ShardKeyTheIndexDoesNotListIsRejected()
    {
        EditIndex(map => map.Remove("b"));
        AssertRejected($"shard '{Shard1}' holds tensor 'b', which the index does not list");
    }

    [TestCase("../outside.safetensors")]
    [TestCase("/etc/passwd.safetensors")]
    [TestCase("sub/model.safetensors")]
    [TestCase("..")]
    [TestCase("model-00001-of-00002.bin")]
    [TestCase("")]
    public void ShardNameThatIsNotAPlainSafetensorsFileIsRejected(string shard)
    {
        EditIndex(map => map["a"] = shard);
        AssertRejected("not a plain '.safetensors' file name in the same folder");
    }

    private static IEnumerable<TestCaseData> MalformedIndexes()
    {
        TestCaseData Case(string name, string json, string problem) => new TestCaseData(json, problem).SetName($"RejectsIndex_{name}");
        yield return Case("NotJson", "{\"weight_map\":", "not valid JSON");
        yield return Case("NotObject", "[]", "holds a JSON Array, not an object");
        yield return Case("NoWeightMap", "{\"metadata\":{}}", "there is no 'weight_map'");
        yield return Case("WeightMapArray", "{\"weight_map\":[]}", "'weight_map' is a JSON Array, not an object");
        yield return Case("WeightMapValueNumber", "{\"weight_map\":{\"a\":1}}", "'weight_map' value for 'a' is a JSON Number");
        yield return Case("DuplicateKey", $"{{\"weight_map\":{{\"a\":\"{Shard1}\",\"a\":\"{Shard2}\"}}}}", "'weight_map' names 'a' more than once");
        yield return Case("DuplicateWeightMap", $"{{\"weight_map\":{{}},\"weight_map\":{{\"a\":\"{Shard1}\"}}}}",
            "the top level names 'weight_map' more than once");
        yield return Case("MetadataString", $"{{\"metadata\":\"x\",\"weight_map\":{{}}}}", "'metadata' is a JSON String");
    }

    [TestCaseSource(nameof(MalformedIndexes))]
    public void MalformedIndexIsRejected(string json, string problem)
    {
        File.WriteAllText(_index, json);
        AssertRejected(problem);
    }

    [Test]
    public void IndexNotUtf8IsRejected()
    {
        File.WriteAllBytes(_index, [(byte)'{', 0xFF, (byte)'}']);
        AssertRejected("not valid UTF-8");
    }

    [Test]
    public void CorruptShardIsRejectedNamingTheShard()
    {
        var shard = Path.Combine(_folder, Shard2);
        File.WriteAllBytes(shard, File.ReadAllBytes(shard)[..^1]);
        var error = Assert.Throws<InvalidDataException>(() => CheckpointFolder.Open(_folder).Dispose());
        Assert.That(error!.Message, Does.Contain(shard).And.Contain("truncated"));
    }

    [Test]
    public void FolderWithBothSingleFileAndIndexIsRejectedAsAmbiguous()
    {
        File.Copy(Path.Combine(_folder, Shard1), Path.Combine(_folder, CheckpointIndex.SingleFileName));
        var error = Assert.Throws<InvalidDataException>(() => CheckpointFolder.Open(_folder).Dispose());
        Assert.That(error!.Message, Does.Contain(_folder).And.Contain("ambiguous"));
    }

    [Test]
    public void FolderWithoutCheckpointIsFileNotFound()
    {
        var empty = Files.PathOf("empty");
        Directory.CreateDirectory(empty);
        var error = Assert.Throws<FileNotFoundException>(() => CheckpointFolder.Open(empty).Dispose());
        Assert.That(error!.Message, Does.Contain(empty));
        Assert.Throws<DirectoryNotFoundException>(() => CheckpointFolder.Open(Files.PathOf("missing")).Dispose());
    }

    [Test]
    public void UnknownKeyThrowsKeyNotFoundNamingKeyAndFolder()
    {
        using var folder = CheckpointFolder.Open(_folder);
        Assert.That(folder.Contains("a"), Is.True);
        Assert.That(folder.Contains("zz"), Is.False);
        var entryError = Assert.Throws<KeyNotFoundException>(() => folder.GetEntry("zz"));
        Assert.That(entryError!.Message, Does.Contain("'zz'").And.Contain(_folder));
        var readError = Assert.Throws<KeyNotFoundException>(() => folder.ReadTensor("zz").Dispose());
        Assert.That(readError!.Message, Does.Contain("'zz'").And.Contain(_folder));
    }

    private void EditIndex(Action<JsonObject> editWeightMap)
    {
        var index = JsonNode.Parse(File.ReadAllText(_index))!.AsObject();
        editWeightMap(index["weight_map"]!.AsObject());
        File.WriteAllText(_index, index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private void AssertRejected(string problem)
    {
        var error = Assert.Throws<InvalidDataException>(() => CheckpointFolder.Open(_folder).Dispose());
        Assert.That(error!.Message, Does.Contain(_index), "the message names the index");
        Assert.That(error.Message, Does.Contain(problem), "the message names the problem");
    }
}
