using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Pipelining;
using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.HuggingFace;

public class HuggingFaceCheckpointTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("qwen3moe-ckpt-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static void AssertSameTensors(string expectedFolder, string actualFolder)
    {
        using var expected = CheckpointFolder.Open(expectedFolder);
        using var actual = CheckpointFolder.Open(actualFolder);
        Assert.That(actual.Keys.OrderBy(k => k), Is.EqualTo(expected.Keys.OrderBy(k => k)), "same keys");
        foreach (var key in expected.Keys)
        {
            using var scope = NewDisposeScope();
            TensorAssert.Equal(actual.ReadTensor(key), expected.ReadTensor(key), key);
        }
    }

    private static void AssertSameParameters(Qwen3MoeForCausalLM expected, Qwen3MoeForCausalLM actual)
    {
        var a = actual.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
        var e = expected.UniqueNamedParameters();
        Assert.That(a.Keys, Is.EquivalentTo(e.Select(x => x.Name)));
        foreach (var (name, p) in e) TensorAssert.Equal(a[name], p, name);
    }

    [TestCase("tiny")]
    [TestCase("mixed")]
    public void FixtureExportedAndReReadIsTensorForTensorEqual(string fixture)
    {
        var source = Path.Combine(GoldenFixture.BuiltInRoot, fixture, "model");
        using var model = HuggingFaceCheckpoint.Load(source);
        var exported = Path.Combine(_dir, "export");
        HuggingFaceCheckpoint.Save(model, exported, maxShardBytes: 200_000);
        Assert.That(File.Exists(Path.Combine(exported, "model.safetensors.index.json")), Is.True, "sharded by the size limit");
        Assert.That(File.Exists(Path.Combine(exported, "config.json")), Is.True);
        AssertSameTensors(source, exported);
        using var again = HuggingFaceCheckpoint.Load(exported);
        AssertSameParameters(model, again);
    }

    [Test]
    public void FusedTransformers5LayoutLoadsTheSameWeights()
    {
        var source = GoldenFixture.Tiny.ModelFolder;
        using var model = HuggingFaceCheckpoint.Load(source);
        var fused = Path.Combine(_dir, "fused");
        var tensors = model.state_dict().Select(kv => new KeyValuePair<string, Tensor>(
            kv.Key == "model.embed_tokens.token_embedding.default.weight" ? "model.embed_tokens.weight" :
            kv.Key == "lm_head.lm_head.default.weight" ? "lm_head.weight" : kv.Key, kv.Value)).ToList();
        Assert.That(tensors.Any(t => t.Key == "model.layers.0.mlp.experts.gate_up_proj" && t.Value.shape.SequenceEqual(new long[] { 8, 96, 64 })), Is.True,
            "[E, 2I, H]");
        CheckpointFolderWriter.Write(fused, tensors, long.MaxValue,
            new Dictionary<string, string> { ["config.json"] = File.ReadAllText(Path.Combine(source, "config.json")) });
        using var fromFused = HuggingFaceCheckpoint.Load(fused);
        AssertSameParameters(model, fromFused);
    }

    [Test]
    public void EachStageLoadsOnlyItsOwnSliceAndStagesExportAsOne()
    {
        var source = GoldenFixture.Tiny.ModelFolder;
        using var full = HuggingFaceCheckpoint.Load(source);
        var all = full.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
        var stages = Enumerable.Range(0, 2).Select(s => HuggingFaceCheckpoint.Load(source, new PipelineStageInfo(s, 2))).ToList();
        try
        {
            Assert.That(stages[0].Model.FirstLayer, Is.EqualTo(0));
            Assert.That(stages[0].Model.EndLayer, Is.EqualTo(2));
            var names = stages.SelectMany(st => st.UniqueNamedParameters().Select(x => x.Name)).ToList();
            Assert.That(names, Is.EquivalentTo(all.Keys), "the stages partition the full state dict, with global layer indices");
            Assert.That(stages[0].UniqueNamedParameters().Any(x => x.Name.StartsWith("model.layers.2.") || x.Name.StartsWith("lm_head")), Is.False);
            Assert.That(stages[1].UniqueNamedParameters().Any(x => x.Name.StartsWith("model.embed_tokens")), Is.False);
            foreach (var st in stages)
                foreach (var (name, p) in st.UniqueNamedParameters()) TensorAssert.Equal(p, all[name], name);
            var exported = Path.Combine(_dir, "from-stages");
            HuggingFaceCheckpoint.Save(stages, exported);
            AssertSameTensors(source, exported);
        }
        finally
        {
            foreach (var st in stages) st.Dispose();
        }
    }

    private string CopyOfTinyWith(Func<List<KeyValuePair<string, Tensor>>, List<KeyValuePair<string, Tensor>>> edit)
    {
        var source = GoldenFixture.Tiny.ModelFolder;
        using var ckpt = CheckpointFolder.Open(source);
        var tensors = edit(ckpt.Keys.Select(k => new KeyValuePair<string, Tensor>(k, ckpt.ReadTensor(k))).ToList());
        var folder = Path.Combine(_dir, "edited");
        CheckpointFolderWriter.Write(folder, tensors, long.MaxValue,
            new Dictionary<string, string> { ["config.json"] = File.ReadAllText(Path.Combine(source, "config.json")) });
        return folder;
    }

    [Test]
    public void MissingTensorIsNamed()
    {
        var folder = CopyOfTinyWith(t => t.Where(kv => kv.Key != "model.layers.1.mlp.experts.3.up_proj.weight").ToList());
        Assert.That(() => HuggingFaceCheckpoint.Load(folder),
            Throws.TypeOf<InvalidDataException>().With.Message.Contains("missing").And.Message.Contains("model.layers.1.mlp.experts.3.up_proj.weight"));
    }

    [Test]
    public void UnexpectedTensorIsNamed()
    {
        var folder = CopyOfTinyWith(t => t.Append(new("model.layers.9.extra.weight", zeros(2))).ToList());
        Assert.That(() => HuggingFaceCheckpoint.Load(folder),
            Throws.TypeOf<InvalidDataException>().With.Message.Contains("unexpected").And.Message.Contains("model.layers.9.extra.weight"));
    }

    [Test]
    public void MisShapedTensorNamesKeyAndBothShapes()
    {
        var folder = CopyOfTinyWith(t =>
            t.Select(kv => kv.Key == "model.layers.0.self_attn.k_proj.weight" ? new KeyValuePair<string, Tensor>(kv.Key, zeros(32, 64)) : kv).ToList());
        Assert.That(() => HuggingFaceCheckpoint.Load(folder), Throws.TypeOf<InvalidDataException>()
            .With.Message.Contains("model.layers.0.self_attn.k_proj.weight").And.Message.Contains("[32, 64]").And.Message.Contains("[64, 64]"));
    }

    [Test]
    public void Float16AndBfloat16CheckpointsLoadConverted()
    {
        foreach (var dtype in new[] { ScalarType.Float16, ScalarType.BFloat16 })
        {
            var folder = CopyOfTinyWith(t => t.Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.to(dtype))).ToList());
            using var model = HuggingFaceCheckpoint.Load(folder);
            using var reference = HuggingFaceCheckpoint.Load(GoldenFixture.Tiny.ModelFolder);
            var q = model.UniqueNamedParameters().First(x => x.Name.EndsWith("q_proj.weight")).Parameter;
            var qRef = reference.UniqueNamedParameters().First(x => x.Name.EndsWith("q_proj.weight")).Parameter;
            TensorAssert.Equal(q, qRef.to(dtype).to(ScalarType.Float32), $"{dtype} stored, float32 loaded");
            Directory.Delete(folder, true);
        }
    }
}
