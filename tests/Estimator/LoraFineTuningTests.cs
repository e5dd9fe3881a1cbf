using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

/// <summary>
/// <c>FineTuning = LoRA</c> through ML.NET: the fit trains adapters on a frozen base folder; the model's zip holds the
/// adapters and a fingerprinted reference to the base (not the base); the adapter exports as a PEFT folder that
/// <c>LoadHuggingFace(basePath, adapterPath: ...)</c> applies, and as a merged Hugging Face folder with the same scores.
/// </summary>
public class LoraFineTuningTests : CheckpointTestBase
{
    private string SaveBase()
    {
        var folder = Files.PathOf("base");
        using var transformer = TestModels.RandomTextTransformer(new MLContext(seed: 1), seed: 5);
        transformer.ExportHuggingFace(folder);
        return folder;
    }

    private static MLContext Fresh()
    {
        var ml = new MLContext(seed: 2);
        ml.ComponentCatalog.RegisterQwen3Moe();
        return ml;
    }

    /// <summary>The messages of an exception and its inner exceptions (ML.NET wraps a loader's exception).</summary>
    private static string Messages(Exception? e) => e is null ? "" : e.Message + " | " + Messages(e.InnerException);

    private static Qwen3MoeEstimator.Options LoraOptions(string basePath) => new()
    {
        ModelPath = basePath, TokenizerPath = TestModels.TokenizerFolder, FineTuning = Qwen3MoeFineTuning.LoRA, LoraRank = 4, LoraAlpha = 8,
        BatchSize = 6, MaxEpochs = 50, MaxSteps = 6, LearningRate = 3e-2, WarmupRatio = 0, LearningRateSchedule = LearningRateScheduleKind.Constant, Seed = 3,
    };

    [Test]
    public void LoraFitTrainsAdaptersAndSavesASmallZipThatNeedsItsBase()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, TestModels.Corpus);
        var basePath = SaveBase();
        float[] baseScores;
        using (var plain = ml.Qwen3Moe().LoadHuggingFace(basePath)) baseScores = TestModels.Floats(plain.Transform(data), "MeanLogProbability");

        using var model = ml.Qwen3Moe().FineTune(LoraOptions(basePath)).Fit(data);
        Assert.That(model.HasAdapters, Is.True);
        Assert.That(model.BaseModelPath, Is.EqualTo(Path.GetFullPath(basePath)));
        var losses = model.TrainingHistory.Select(s => s.Loss).ToArray();
        Assert.That(losses[^1], Is.LessThan(losses[0] - 0.1), $"LoRA lowers the loss (a random base, rank 4: slowly): {string.Join(", ", losses)}");
        var scores = TestModels.Floats(model.Transform(data), "MeanLogProbability");
        Assert.That(scores.Average(), Is.GreaterThan(baseScores.Average()), "the adapted model scores its training text better than the base");

        var zip = Files.PathOf("lora.zip");
        ml.Model.Save(model, data.Schema, zip);
        long baseBytes = Directory.GetFiles(basePath).Sum(f => new FileInfo(f).Length);
        Assert.That(new FileInfo(zip).Length, Is.LessThan(baseBytes / 4), "the zip holds adapters and tokenizer, not the base weights");
        var loaded = Fresh().Model.Load(zip, out _);
        Assert.That(TestModels.Floats(loaded.Transform(data), "MeanLogProbability"), Is.EqualTo(scores), "scores after the zip round trip");
        ((IDisposable)loaded).Dispose();

        var adapter = Files.PathOf("adapter");
        model.ExportAdapter(adapter);
        using (var applied = ml.Qwen3Moe().LoadHuggingFace(basePath, tokenizerPath: TestModels.TokenizerFolder, adapterPath: adapter))
            Assert.That(TestModels.Floats(applied.Transform(data), "MeanLogProbability"), Is.EqualTo(scores), "base + exported PEFT adapter");

        Assert.Throws<InvalidOperationException>(() => model.ExportHuggingFace(Files.PathOf("unmerged")));
        var merged = Files.PathOf("merged");
        model.ExportHuggingFace(merged, merge: true);
        using (var full = ml.Qwen3Moe().LoadHuggingFace(merged))
            Assert.That(TestModels.Floats(full.Transform(data), "MeanLogProbability"), Is.EqualTo(scores).Within(1e-4),
                "merged export scores as the adapters do");
        Assert.That(TestModels.Floats(model.Transform(data), "MeanLogProbability"), Is.EqualTo(scores), "the model keeps its adapters after a merged export");

        // a changed base is refused, naming the base folder and what changed
        var config = Path.Combine(basePath, "config.json");
        var text = File.ReadAllText(config);
        Assert.That(text, Does.Contain("\"silu\""));
        File.WriteAllText(config, text.Replace("\"silu\"", "\"SILU\"")); // same size, other content
        var changed = Assert.Catch(() => Fresh().Model.Load(zip, out _));
        Assert.That(Messages(changed), Does.Contain(Path.GetFullPath(basePath)).And.Contain("config.json").And.Contain("sha256"));
        Directory.Delete(basePath, recursive: true);
        var missing = Assert.Catch(() => Fresh().Model.Load(zip, out _));
        Assert.That(Messages(missing), Does.Contain(Path.GetFullPath(basePath)).And.Contain("missing"));
    }

    [Test]
    public void LoraOptionsAreCheckedUpFront()
    {
        var ml = new MLContext(seed: 1);
        var noBase = TestModels.TextOptions();
        noBase.FineTuning = Qwen3MoeFineTuning.LoRA;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(noBase));
        Assert.That(e!.ParamName, Is.EqualTo("ModelPath"));
        var badRank = LoraOptions("somewhere");
        badRank.LoraRank = 0;
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(badRank));
        Assert.That(e!.ParamName, Is.EqualTo("LoraRank"));
        var adapterWithoutLora = TestModels.TextOptions();
        adapterWithoutLora.AdapterPath = "x";
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(adapterWithoutLora));
        Assert.That(e!.ParamName, Is.EqualTo("AdapterPath"));
    }
}
