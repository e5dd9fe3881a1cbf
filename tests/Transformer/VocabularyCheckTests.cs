using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer;

/// <summary>A tokenizer whose ids exceed the model's vocab_size is refused when the model is loaded or the fit starts, naming both files and sizes.</summary>
[TestFixture]
public class VocabularyCheckTests
{
    private static void AssertNamesBoth(InvalidDataException e)
    {
        Assert.That(e.Message, Does.Contain(Path.Combine(TestModels.TokenizerFolder, "tokenizer.json")));
        Assert.That(e.Message, Does.Contain(Path.Combine(TestModels.TinyGoldenFolder, "config.json")));
        Assert.That(e.Message, Does.Contain("151,669 token ids").And.Contain("has 384"));
        Assert.That(e.Message, Does.Contain("don't belong together"));
    }

    [Test]
    public void LoadingAModelWithAForeignTokenizerFailsAtLoad()
    {
        var ml = new MLContext(seed: 1);
        var e = Assert.Throws<InvalidDataException>(() => ml.Qwen3Moe().LoadHuggingFace(TestModels.TinyGoldenFolder,
            tokenizerPath: TestModels.TokenizerFolder));
        AssertNamesBoth(e!);
    }

    [Test]
    public void FittingAModelWithAForeignTokenizerFailsBeforeTraining()
    {
        var ml = new MLContext(seed: 1);
        var options = TestModels.TextOptions();
        options.NewModel = null;
        options.ModelPath = TestModels.TinyGoldenFolder;
        var e = Assert.Throws<InvalidDataException>(() => ml.Qwen3Moe().FineTune(options).Fit(TestModels.Texts(ml, TestModels.Corpus)));
        AssertNamesBoth(e!);
    }

    [Test]
    public void ANewModelTooSmallForTheTokenizerIsRefused()
    {
        var ml = new MLContext(seed: 1);
        var parameters = TestModels.TinyTextParameters();
        parameters = parameters with { Model = parameters.Model with { SplitVocabSize = new Dictionary<string,
            int> { [Configuration.Qwen3MoeParameters.DefaultSplitName] = 1000 } } };
        var e = Assert.Throws<InvalidDataException>(() => ml.Qwen3Moe().CreateRandom(parameters, TestModels.TokenizerFolder));
        Assert.That(e!.Message, Does.Contain("the new model (NewModel)").And.Contain("has 1,000"));
    }
}
