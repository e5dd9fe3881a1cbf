using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Generation;

/// <summary><c>generation_config.json</c>'s <c>eos_token_id</c>: a number, a list, absent; malformed files are named; a loaded model stops on them.</summary>
public class GenerationConfigTests
{
    private string _folder = null!;

    [SetUp]
    public void SetUp() => _folder = Directory.CreateTempSubdirectory("qwen3moe-genconfig-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_folder, recursive: true);

    private void Write(string json) => File.WriteAllText(Path.Combine(_folder, GenerationConfig.FileName), json);

    [Test]
    public void ReadsANumberAListOrNothing()
    {
        Assert.That(GenerationConfig.ReadEosTokenIds(_folder), Is.Empty, "no file");
        Write("{\"eos_token_id\": 151645}");
        Assert.That(GenerationConfig.ReadEosTokenIds(_folder), Is.EqualTo(new[] { 151645 }));
        Write("{\"bos_token_id\": 1, \"eos_token_id\": [151645, 151643]}");
        Assert.That(GenerationConfig.ReadEosTokenIds(_folder), Is.EqualTo(new[] { 151645, 151643 }));
        Write("{\"eos_token_id\": null}");
        Assert.That(GenerationConfig.ReadEosTokenIds(_folder), Is.Empty);
        Write("{\"eos_token_id\": \"x\"}");
        Assert.That(Assert.Throws<InvalidDataException>(() => GenerationConfig.ReadEosTokenIds(_folder))!.Message, Does.Contain("generation_config.json"));
        Write("{not json");
        Assert.That(Assert.Throws<InvalidDataException>(() => GenerationConfig.ReadEosTokenIds(_folder))!.Message, Does.Contain("not valid JSON"));
    }

    [Test]
    public void AModelLoadedFromAFolderStopsOnItsGenerationConfigIds()
    {
        var ml = new MLContext(seed: 1);
        var exported = Path.Combine(_folder, "model");
        using (var random = TestModels.RandomTextTransformer(ml)) random.ExportHuggingFace(exported);
        File.WriteAllText(Path.Combine(exported, GenerationConfig.FileName), "{\"eos_token_id\": [7, 9]}");
        using var model = ml.Qwen3Moe().LoadHuggingFace(exported);
        Assert.That(model.TextGenerator.EosTokenIds, Is.SupersetOf(new[] { 7, 9, model.Tokenizer!.EosTokenId }));
    }
}
