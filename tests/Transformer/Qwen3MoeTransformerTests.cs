using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer;

[TestFixture]
public class Qwen3MoeTransformerTests
{
    private static readonly string[] Lines =
    {
        "The cat sat on the mat.",
        "A much longer line, so that the others in its batch are padded: the dog sat on the log by the door.",
        "Hi there",
        "x",
        "",
    };

    private string _temp = null!;

    [SetUp]
    public void SetUp() => _temp = Directory.CreateTempSubdirectory("qwen3moe-tests-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_temp, recursive: true);

    [Test]
    public void SaveLoadRoundTripInAChainGivesIdenticalScores()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Lines);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var chain = ml.Transforms.CopyColumns("Original", "Text").Fit(data).Append(scorer);
        var before = chain.Transform(data);
        var path = Path.Combine(_temp, "model.zip");
        ml.Model.Save(chain, data.Schema, path);

        var fresh = new MLContext(seed: 2);
        fresh.ComponentCatalog.RegisterQwen3Moe();
        var loaded = fresh.Model.Load(path, out var schema);
        try
        {
            Assert.That(schema["Text"].Type, Is.EqualTo(data.Schema["Text"].Type));
            var after = loaded.Transform(TestModels.Texts(fresh, Lines));
            Assert.That(TestModels.Vectors(after, "LogProbabilities"), Is.EqualTo(TestModels.Vectors(before, "LogProbabilities")));
            Assert.That(TestModels.Floats(after, "Perplexity"), Is.EqualTo(TestModels.Floats(before, "Perplexity")));
            Assert.That(after.GetColumn<int>("TokenCount").ToArray(), Is.EqualTo(before.GetColumn<int>("TokenCount").ToArray()));
            Assert.That(after.GetColumn<string>("Original").ToArray(), Is.EqualTo(Lines));
        }
        finally
        {
            (loaded as IDisposable)?.Dispose();
        }
    }

    [Test]
    public void LoadingWithoutRegistrationFailsLoudly()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Lines);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var path = Path.Combine(_temp, "model.zip");
        ml.Model.Save(scorer, data.Schema, path);
        var fresh = new MLContext(seed: 2);
        var e = Assert.Catch(() => fresh.Model.Load(path, out _));
        Assert.That(e!.Message, Does.Contain("Couldn't load model"));
    }

    [Test]
    public void TheZipRouteIsSupportedByThisMlNet()
    {
        // Pins every ML.NET 5.0.1 internal the zip adapter reaches by reflection: a new ML.NET that moves one fails here.
        Assert.DoesNotThrow(MlNetModelSlot.EnsureSupported);
    }

    [Test]
    public void PredictionEngineAgreesWithTransform()
    {
        var ml = new MLContext(seed: 1);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var scored = scorer.Transform(TestModels.Texts(ml, Lines));
        var logps = TestModels.Vectors(scored, "LogProbabilities");
        var ppl = TestModels.Floats(scored, "Perplexity");
        var counts = scored.GetColumn<int>("TokenCount").ToArray();
        var engine = ml.Model.CreatePredictionEngine<TextRow, ScoreRow>(scorer);
        for (int i = 0; i < Lines.Length; i++)
        {
            var p = engine.Predict(new TextRow { Text = Lines[i] });
            Assert.That(p.TokenCount, Is.EqualTo(counts[i]), $"row {i}");
            Assert.That(p.LogProbabilities, Is.EqualTo(logps[i]).Within(1e-5), $"row {i}");
            if (counts[i] >= 2) Assert.That(p.Perplexity, Is.EqualTo(ppl[i]).Within(1e-4).Percent, $"row {i}");
            else Assert.That(p.Perplexity, Is.NaN, $"row {i} has nothing to predict");
        }
    }

    [Test]
    public void PaddingDoesNotChangeARowsScores()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Lines);
        using var batched = TestModels.RandomTextTransformer(ml, new Qwen3MoeScoringOptions { ScoringBatchSize = 8 });
        using var single = TestModels.RandomTextTransformer(ml, new Qwen3MoeScoringOptions { ScoringBatchSize = 1 });
        var a = TestModels.Vectors(batched.Transform(data), "LogProbabilities");
        var b = TestModels.Vectors(single.Transform(data), "LogProbabilities");
        for (int i = 0; i < Lines.Length; i++) Assert.That(a[i], Is.EqualTo(b[i]).Within(1e-5), $"row {i}");
    }

    [Test]
    public void RoutingStatisticsCountEveryScoredTokenTopKTimes()
    {
        var ml = new MLContext(seed: 1);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var scored = scorer.Transform(TestModels.Texts(ml, Lines));
        int tokens = scored.GetColumn<int>("TokenCount").Where(c => c >= 2).Sum();
        var stats = scorer.LastRoutingStatistics;
        var p = scorer.ModelParameters.Model;
        Assert.That(stats.SparseLayers, Is.EqualTo(Enumerable.Range(0, p.NumHiddenLayers).Where(p.IsSparseLayer)));
        Assert.That(stats.TokensRouted, Is.EqualTo(tokens));
        foreach (var layer in stats.TokensPerExpert)
        {
            Assert.That(layer, Has.Count.EqualTo(p.Layer.NumExperts));
            Assert.That(layer.Sum(), Is.EqualTo(tokens * p.Layer.ExpertsTopK), "padding is not routed; each real token picks k experts");
        }
        Assert.That(stats.MaxOverMeanLoad(0), Is.GreaterThanOrEqualTo(1.0));
    }

    [Test]
    public void ExportHuggingFaceReadsBackIdentically()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Lines);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var folder = Path.Combine(_temp, "hf");
        scorer.ExportHuggingFace(folder);
        Assert.That(File.Exists(Path.Combine(folder, "config.json")));
        Assert.That(File.Exists(Path.Combine(folder, "tokenizer.json")));
        Assert.That(File.Exists(Path.Combine(folder, "tokenizer_config.json")));
        using var reloaded = ml.Qwen3Moe().LoadHuggingFace(folder);
        Assert.That(TestModels.Vectors(reloaded.Transform(data), "LogProbabilities"),
            Is.EqualTo(TestModels.Vectors(scorer.Transform(data), "LogProbabilities")));
    }

    [Test]
    public void ABrokenModelFolderNamesTheFileAndTheProblem()
    {
        var ml = new MLContext(seed: 1);
        var folder = Path.Combine(_temp, "broken");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), "{ not json");
        var e = Assert.Throws<FormatException>(() => ml.Qwen3Moe().LoadHuggingFace(folder));
        Assert.That(e!.Message, Does.Contain("config.json").And.Contain("invalid JSON"));
    }

    [Test]
    public void TransformNeverHandsOutParallelCursors()
    {
        var ml = new MLContext(seed: 1);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var scored = scorer.Transform(TestModels.Texts(ml, Lines));
        var cursors = scored.GetRowCursorSet(scored.Schema, 4);
        Assert.That(cursors, Has.Length.EqualTo(1));
        foreach (var c in cursors) c.Dispose();
    }

    [Test]
    public void ADisposedTransformerRefusesWork()
    {
        var ml = new MLContext(seed: 1);
        var scorer = TestModels.RandomTextTransformer(ml);
        scorer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => scorer.Transform(TestModels.Texts(ml, Lines)));
    }
}
