using System.Text.Json.Nodes;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Pipelining;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Configuration;

/// <summary>Configs that ask for absurd or unaffordable models fail with a message before anything is allocated.</summary>
public class ConfigBoundsTests
{
    private string _temp = null!;

    [SetUp]
    public void SetUp() => _temp = Directory.CreateTempSubdirectory("qwen3moe-bounds-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_temp, recursive: true);

    private static JsonObject TinyJson() => JsonNode.Parse(File.ReadAllText(Path.Combine(GoldenFixture.Tiny.ModelFolder, "config.json")))!.AsObject();

    [TestCase("vocab_size", 2147483647L)]
    [TestCase("hidden_size", 1000000L)]
    [TestCase("num_experts", 1000000L)]
    [TestCase("num_hidden_layers", 100000L)]
    [TestCase("max_position_embeddings", 2147483647L)]
    public void SizesBeyondTheLimitsAreRejected(string field, long value)
    {
        var o = TinyJson();
        o[field] = value;
        if (field == "hidden_size") o["head_dim"] = 32;
        var e = Assert.Throws<FormatException>(() => HuggingFaceConfig.Parse(o.ToJsonString(), "big/config.json"))!;
        Assert.That(e.Message, Does.Contain("big/config.json").And.Contain("limit"));
    }

    [Test]
    public void ADuplicateKeyNamesTheFileAndTheKey()
    {
        var path = Path.Combine(_temp, "config.json");
        var json = TinyJson().ToJsonString();
        File.WriteAllText(path, json.Insert(1, "\"hidden_size\": 4096, "));
        var e = Assert.Throws<FormatException>(() => HuggingFaceConfig.Load(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("hidden_size"));
    }

    [Test]
    public void TheMemoryCheckStatesNeededAndAvailable()
    {
        var e = Assert.Throws<InsufficientMemoryException>(() => ModelMemory.Check(12L << 30, 8L << 30, "The model", "the CPU"))!;
        Assert.That(e.Message, Does.Contain("12 GiB").And.Contain("8 GiB").And.Contain("the CPU"));
        Assert.DoesNotThrow(() => ModelMemory.Check(8L << 30, 8L << 30, "The model", "the CPU"), "exactly enough");
        Assert.DoesNotThrow(() => ModelMemory.Check(long.MaxValue, null, "The model", "cuda:0"), "unknown memory is not checked");
        Assert.That(ModelMemory.WeightBytes(1000, TorchSharp.torch.ScalarType.BFloat16), Is.EqualTo(2000));
    }

    [Test]
    public void AModelLargerThanMemoryFailsBeforeAllocation()
    {
        // within every limit, but 16,777,216 x 65,536 embeddings alone are 4 TiB in float32
        var o = TinyJson();
        o["vocab_size"] = ConfigLimits.MaxVocabSize;
        o["hidden_size"] = ConfigLimits.MaxHiddenSize;
        o["head_dim"] = 32;
        var p = HuggingFaceConfig.Parse(o.ToJsonString());
        var e = Assert.Throws<InsufficientMemoryException>(() => new Qwen3MoeForCausalLM(p).Dispose())!;
        Assert.That(e.Message, Does.Contain("needs").And.Contain("available").And.Contain("GiB"));
    }

    [Test]
    public void StageCountsAddUpToTheWholeModel([Values(1, 2, 3)] int stages)
    {
        var p = HuggingFaceConfig.Load(GoldenFixture.Mixed.ModelFolder);
        long sum = Enumerable.Range(0, stages).Sum(i => ParameterCount.OfStage(p, new PipelineStageInfo(i, stages)));
        Assert.That(sum, Is.EqualTo(ParameterCount.Of(p).Total));
        using var model = new Qwen3MoeForCausalLM(p);
        Assert.That(ParameterCount.OfStage(p, PipelineStageInfo.Single), Is.EqualTo(model.UniqueNamedParameters().Sum(x => x.Item2.numel())));
    }

    [Test]
    public void HeaderShapesAreCheckedAgainstTheConfigBeforeTheModelIsBuilt()
    {
        foreach (var f in Directory.GetFiles(GoldenFixture.Tiny.ModelFolder)) File.Copy(f, Path.Combine(_temp, Path.GetFileName(f)));
        var o = TinyJson();
        o["moe_intermediate_size"] = o["moe_intermediate_size"]!.GetValue<int>() * 2;
        File.WriteAllText(Path.Combine(_temp, "config.json"), o.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpoint.Load(_temp).Dispose())!;
        Assert.That(e.Message, Does.Contain("the config (config.json) needs").And.Contain("mlp.experts"));
    }
}
