using System.Text.Json.Nodes;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.HuggingFace;

public class HuggingFaceConfigTests
{
    private static JsonObject TinyJson() => JsonNode.Parse(File.ReadAllText(Path.Combine(GoldenFixture.Tiny.ModelFolder, "config.json")))!.AsObject();

    private static Qwen3MoeForCausalLMParameters Parse(JsonObject o) => HuggingFaceConfig.Parse(o.ToJsonString(), "test-config.json");

    [Test]
    public void ReadsPublishedSpelling()
    {
        var p = HuggingFaceConfig.Load(GoldenFixture.Tiny.ModelFolder);
        Assert.That(p.Model.Layer.NumExperts, Is.EqualTo(8));
        Assert.That(p.Model.RopeBase, Is.EqualTo(1_000_000.0));
        Assert.That(p.Model.Layer.HeadDim, Is.EqualTo(32));
        Assert.That(p.Model.Layer.NumKeyValueHeads, Is.EqualTo(2));
        Assert.That(p.Model.VocabSize, Is.EqualTo(384));
        Assert.That(p.TieWordEmbeddings, Is.False);
        Assert.That(p.RouterAuxLossCoefficient, Is.EqualTo(0.001));
        Assert.That(Enumerable.Range(0, 3).All(p.Model.IsSparseLayer), Is.True);
    }

    [Test]
    public void ReadsTransformers5Spelling()
    {
        var p = HuggingFaceConfig.Load(GoldenFixture.Mixed.ModelFolder);
        Assert.That(p.Model.Layer.NumExperts, Is.EqualTo(16), "num_local_experts");
        Assert.That(p.Model.RopeBase, Is.EqualTo(10_000.0), "rope_parameters.rope_theta");
        Assert.That(p.Model.Layer.NumKeyValueHeads, Is.EqualTo(1), "MQA");
        Assert.That(p.Model.Layer.HeadDim * p.Model.Layer.NumAttentionHeads, Is.Not.EqualTo(p.Model.Layer.HiddenSize), "head_dim independent of hidden/heads");
        Assert.That(p.Model.Layer.NormalizeTopKProbabilities, Is.False);
        Assert.That(p.TieWordEmbeddings, Is.True);
        Assert.That(new[] { 0, 1, 2, 3 }.Select(p.Model.IsSparseLayer), Is.EqualTo(new[] { true, false, true, true }), "mlp_only_layers [1]");
    }

    [Test]
    public void DecoderSparseStepMakesOtherLayersDense()
    {
        var o = TinyJson();
        o["decoder_sparse_step"] = 2;
        o["num_hidden_layers"] = 4;
        var p = Parse(o);
        Assert.That(new[] { 0, 1, 2, 3 }.Select(p.Model.IsSparseLayer), Is.EqualTo(new[] { false, true, false, true }));
    }

    [Test]
    public void JsonRoundTripKeepsEveryField()
    {
        foreach (var f in new[] { GoldenFixture.Tiny, GoldenFixture.Mixed })
        {
            var p = HuggingFaceConfig.Load(f.ModelFolder);
            var again = HuggingFaceConfig.Parse(HuggingFaceConfig.ToJson(p));
            Assert.That(again.Model.Layer, Is.EqualTo(p.Model.Layer), f.Name);
            Assert.That(again.Model.MlpOnlyLayers, Is.EqualTo(p.Model.MlpOnlyLayers), f.Name);
            Assert.That(again.Model.SplitVocabSize, Is.EqualTo(p.Model.SplitVocabSize), f.Name);
            Assert.That(HuggingFaceConfig.ToJson(again), Is.EqualTo(HuggingFaceConfig.ToJson(p)), f.Name);
        }
    }

    [TestCase("rope_scaling", "{\"rope_type\":\"yarn\",\"factor\":4.0}", "rope_scaling.rope_type 'yarn'")]
    [TestCase("use_sliding_window", "true", "use_sliding_window")]
    [TestCase("hidden_act", "\"gelu\"", "hidden_act 'gelu'")]
    [TestCase("attention_dropout", "0.1", "attention_dropout")]
    [TestCase("num_key_value_heads", "3", "NumKeyValueHeads = 3")]
    [TestCase("num_experts_per_tok", "9", "ExpertsTopK = 9")]
    [TestCase("hidden_size", "-64", "HiddenSize must be positive, got -64")]
    [TestCase("hidden_size", "\"64\"", "'hidden_size' must be an integer")]
    [TestCase("mlp_only_layers", "[7]", "MlpOnlyLayers = 7")]
    [TestCase("model_type", "\"llama\"", "model_type 'llama'")]
    public void UnsupportedOrInvalidFieldsAreClearErrors(string field, string json, string expectedInMessage)
    {
        var o = TinyJson();
        o[field] = JsonNode.Parse(json);
        var e = Assert.Throws<FormatException>(() => Parse(o))!;
        Assert.That(e.Message, Does.Contain(expectedInMessage).And.Contain("test-config.json"));
    }

    [Test]
    public void MissingRequiredFieldIsNamed()
    {
        var o = TinyJson();
        o.Remove("moe_intermediate_size");
        Assert.That(() => Parse(o), Throws.TypeOf<FormatException>().With.Message.Contains("'moe_intermediate_size' is missing"));
    }

    [Test]
    public void InvalidJsonNamesTheFile()
    {
        Assert.That(() => HuggingFaceConfig.Parse("{ not json", "bad.json"), Throws.TypeOf<FormatException>().With.Message.Contains("bad.json"));
    }
}
