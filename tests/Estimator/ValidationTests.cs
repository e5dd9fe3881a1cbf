using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

[TestFixture]
public class ValidationTests
{
    private static readonly string[] ValidationTexts =
    {
        "The cat sat on the log.",
        "A dog sat on the mat by the door.",
        "Quarterly revenue exceeded analyst expectations.",
    };

    /// <summary>6 rows, 3 per step: 2 steps per epoch, 2 epochs. Every 3 steps plus epoch ends: after steps 2 (epoch 1 end), 3, 4 (epoch 2 end).</summary>
    private static Qwen3MoeEstimator.Options Options(MLContext ml)
    {
        var options = TestModels.TextOptions(maxSteps: 0);
        options.MaxEpochs = 2;
        options.ValidationSet = TestModels.Texts(ml, ValidationTexts);
        options.ValidationEveryNSteps = 3;
        return options;
    }

    [Test]
    public void ValidationLossIsReportedEveryNStepsAndAtEpochEndsAndKeptInTheHistory()
    {
        var ml = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(ml);
        using var model = ml.Qwen3Moe().FineTune(Options(ml)).Fit(TestModels.Texts(ml, TestModels.Corpus));
        var history = model.ValidationHistory;
        Assert.That(history.Select(v => v.Step), Is.EqualTo(new[] { 2, 3, 4 }));
        Assert.That(history.Select(v => v.EpochEnd), Is.EqualTo(new[] { true, false, true }));
        Assert.That(history.Select(v => v.Epoch), Is.EqualTo(new long[] { 1, 2, 2 }));
        Assert.That(log.Count(l => l.Contains("Validation after step")), Is.EqualTo(3));
        Assert.That(log, Has.Some.Contains("Validation after step 2/4 (end of epoch 1): loss"));

        // the last validation ran on the final weights: it equals Evaluate of the fitted model on the same rows
        var metrics = ml.Qwen3Moe().Evaluate(model.Transform(TestModels.Texts(ml, ValidationTexts)));
        Assert.That(history[^1].Tokens, Is.EqualTo(metrics.Tokens));
        Assert.That(history[^1].Loss, Is.EqualTo(metrics.MeanNegativeLogLikelihood).Within(1e-5).Percent, "float32 per-token NLL summed in another order");
    }

    [Test]
    public void ValidationDoesNotChangeTheTraining()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, TestModels.Corpus);
        var plain = Options(ml);
        plain.ValidationSet = null;
        using var a = ml.Qwen3Moe().FineTune(plain).Fit(data);
        using var b = ml.Qwen3Moe().FineTune(Options(ml)).Fit(data);
        Assert.That(b.TrainingHistory.Select(r => r.Loss), Is.EqualTo(a.TrainingHistory.Select(r => r.Loss)), "bit-identical losses");
    }

    /// <summary>With KeepBestByValidationLoss the returned weights are those of the lowest validation loss of the fit.</summary>
    [Test]
    public void KeepBestByValidationLossGivesBackTheBestWeights()
    {
        var ml = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(ml);
        var options = Options(ml);
        options.ValidationEveryNSteps = 1;
        options.LearningRate = 3e-2; // large enough that the validation loss does not fall at every step
        options.KeepBestByValidationLoss = true;
        using var model = ml.Qwen3Moe().FineTune(options).Fit(TestModels.Texts(ml, TestModels.Corpus));
        var best = model.ValidationHistory.MinBy(v => v.Loss);
        TestContext.Out.WriteLine(string.Join(", ", model.ValidationHistory.Select(v => $"step {v.Step}: {v.Loss:F4}")));
        Assert.That(log, Has.Some.Contains($"Kept the weights of step {best.Step}"));
        var metrics = ml.Qwen3Moe().Evaluate(model.Transform(TestModels.Texts(ml, ValidationTexts)));
        Assert.That(metrics.MeanNegativeLogLikelihood, Is.EqualTo(best.Loss).Within(1e-5).Percent);
    }

    [Test]
    public void KeepBestNeedsAValidationSet()
    {
        var ml = new MLContext(seed: 1);
        var options = TestModels.TextOptions();
        options.KeepBestByValidationLoss = true;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(options));
        Assert.That(e!.Message, Does.Contain("KeepBestByValidationLoss").And.Contain("needs a ValidationSet"));
        options = TestModels.TextOptions();
        options.ValidationEveryNSteps = -1;
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(options));
    }

    [Test]
    public void AValidationSetWithoutTheColumnGivesMlNetMessageBeforeTraining()
    {
        var ml = new MLContext(seed: 1);
        var options = TestModels.TextOptions();
        options.ValidationSet = ml.Data.LoadFromEnumerable(new[] { new { Prompt = "x" } }.Select(r => new PromptRow { Prompt = r.Prompt }));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(options).Fit(TestModels.Texts(ml, TestModels.Corpus)));
        Assert.That(e!.Message, Does.StartWith("Could not find text column 'Text'"));
    }

    private sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
    }
}
