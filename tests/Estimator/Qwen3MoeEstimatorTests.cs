using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using Microsoft.ML.Qwen3Moe.Training;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

[TestFixture]
public class Qwen3MoeEstimatorTests
{
    private sealed class NumberRow
    {
        public float Text { get; set; }
    }

    private sealed class IdsRow
    {
        [VectorType(24)]
        public long[] Ids { get; set; } = Array.Empty<long>();
    }

    [Test]
    public void MissingTextColumnGivesMlNetMessage()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new TextRow { Text = "x" } });
        var options = TestModels.TextOptions();
        options.TextColumnName = "Prompt";
        var estimator = ml.Qwen3Moe().FineTune(options);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(ShapeOf(data)));
        Assert.That(e!.Message, Does.StartWith("Could not find text column 'Prompt'"));
        Assert.That(e.ParamName, Is.EqualTo("inputSchema"));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(data));
        Assert.That(e!.Message, Does.StartWith("Could not find text column 'Prompt'"));
    }

    [Test]
    public void WrongColumnTypesGiveMlNetMessages()
    {
        var ml = new MLContext(seed: 1);
        var numbers = ml.Data.LoadFromEnumerable(new[] { new NumberRow { Text = 1 } });
        var estimator = ml.Qwen3Moe().FineTune(TestModels.TextOptions());
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(numbers));
        Assert.That(e!.Message, Does.StartWith("Schema mismatch for text column 'Text': expected String, got Single"));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(ShapeOf(numbers)));
        Assert.That(e!.Message, Does.StartWith("Schema mismatch for text column 'Text': expected String, got Single"));

        var idsOptions = TestModels.TextOptions();
        idsOptions.TokenIdsColumnName = "Text";
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(idsOptions).Fit(numbers));
        Assert.That(e!.Message, Does.StartWith("Schema mismatch for token ids column 'Text': expected Vector<Int32> or Vector<Int64>, got Single"));
    }

    [Test]
    public void InvalidOptionsAreRejectedUpFrontNamingTheOption()
    {
        var ml = new MLContext(seed: 1);
        var options = TestModels.TextOptions();
        options.BatchSize = 0;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(options));
        Assert.That(e!.ParamName, Is.EqualTo("BatchSize"));
        options = TestModels.TextOptions();
        options.NewModel = null;
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(options));
        Assert.That(e!.ParamName, Is.EqualTo("ModelPath"));
    }

    [Test]
    public void OutputSchemaDeclaresTheScoreColumnsSoChainsFit()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, TestModels.Corpus);
        var pipeline = ml.Qwen3Moe().FineTune(TestModels.TextOptions(maxSteps: 1))
            .Append(ml.Transforms.CopyColumns("PerplexityCopy", "Perplexity"))
            .Append(ml.Transforms.Concatenate("Features", "MeanLogProbability", "Perplexity"));
        var shape = pipeline.GetOutputSchema(ShapeOf(data));
        var byName = shape.ToDictionary(c => c.Name);
        Assert.That(byName["LogProbabilities"].Kind, Is.EqualTo(SchemaShape.Column.VectorKind.VariableVector));
        Assert.That(byName["LogProbabilities"].ItemType, Is.EqualTo(NumberDataViewType.Single));
        Assert.That(byName["TokenCount"].ItemType, Is.EqualTo(NumberDataViewType.Int32));
        Assert.That(byName["Features"].Kind, Is.EqualTo(SchemaShape.Column.VectorKind.Vector));

        using var model = pipeline.Fit(data);
        var scored = model.Transform(data);
        Assert.That(TestModels.Floats(scored, "PerplexityCopy"), Is.EqualTo(TestModels.Floats(scored, "Perplexity")));
    }

    [Test]
    public void FitThenTransformAddsConsistentScores()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, TestModels.Corpus);
        using var model = ml.Qwen3Moe().FineTune(TestModels.TextOptions(maxSteps: 2)).Fit(data);
        var scored = model.Transform(data);
        var counts = scored.GetColumn<int>("TokenCount").ToArray();
        var logps = TestModels.Vectors(scored, "LogProbabilities");
        var means = TestModels.Floats(scored, "MeanLogProbability");
        var ppl = TestModels.Floats(scored, "Perplexity");
        var texts = scored.GetColumn<string>("Text").ToArray();
        Assert.That(texts, Is.EqualTo(TestModels.Corpus), "input columns pass through");
        for (int i = 0; i < counts.Length; i++)
        {
            Assert.That(counts[i], Is.EqualTo(model.Tokenizer!.Encode(TestModels.Corpus[i]).Length), $"row {i} token count");
            Assert.That(logps[i], Has.Length.EqualTo(counts[i] - 1));
            Assert.That(logps[i], Has.All.LessThanOrEqualTo(0f));
            Assert.That(means[i], Is.EqualTo(logps[i].Average()).Within(1e-5));
            Assert.That(ppl[i], Is.EqualTo(MathF.Exp(-means[i])).Within(1e-3 * ppl[i]));
        }
        Assert.That(model.TrainingHistory, Has.Count.EqualTo(2));
    }

    [Test]
    public void TrainingLowersTheLossAndReportsProgress()
    {
        var ml = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(ml);
        var data = TestModels.Texts(ml, TestModels.Corpus);
        var options = TestModels.TextOptions(maxSteps: 12);
        options.BatchSize = 6;
        options.LearningRate = 2e-2;
        options.LearningRateSchedule = LearningRateScheduleKind.Constant;
        using var model = ml.Qwen3Moe().FineTune(options).Fit(data);
        var losses = model.TrainingHistory.Select(s => s.Loss).ToArray();
        Assert.That(losses, Has.Length.EqualTo(12));
        Assert.That(losses[^1], Is.LessThan(losses[0] * 0.7), $"losses: {string.Join(", ", losses)}");
        var meanPerplexity = TestModels.Floats(model.Transform(data), "Perplexity").Average();
        Assert.That(meanPerplexity, Is.LessThan(Math.Exp(losses[0])), "the fitted model scores its training text better than the start");
        Assert.That(log, Has.Some.Contains("Step 1/12: loss"));
        Assert.That(log, Has.Some.Contains("Step 12/12: loss").And.Contains("tokens/s").And.Contains("learning rate"));
    }

    [Test]
    public void EmptyNullAndLongRowsAreSkippedOrTruncatedWithWarnings()
    {
        var ml = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(ml);
        string longText = string.Join(" ", Enumerable.Repeat("cat sat on the mat", 20));
        var data = TestModels.Texts(ml, "The cat sat.", null, "", "Hi", longText);
        var options = TestModels.TextOptions(maxSteps: 1);
        options.MaxSequenceLength = 16;
        options.LongTextHandling = LongTextHandling.Skip;
        using (var model = ml.Qwen3Moe().FineTune(options).Fit(data))
            Assert.That(model.TrainingHistory, Has.Count.EqualTo(1));
        Assert.That(log, Has.Some.Contains("2 of 5 training row(s) have no text"));
        Assert.That(log, Has.Some.Contains("1 of 5 training row(s) have a single token"));
        Assert.That(log, Has.Some.Contains("1 of 5 training row(s) have more than 16 tokens and were skipped"));

        options.LongTextHandling = LongTextHandling.Truncate;
        using (ml.Qwen3Moe().FineTune(options).Fit(data)) { }
        Assert.That(log, Has.Some.Contains("1 of 5 training row(s) have more than 16 tokens and were truncated"));
    }

    [Test]
    public void EmptyDataReturnsTheUntrainedModelWithAWarning()
    {
        var ml = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(ml);
        using var model = ml.Qwen3Moe().FineTune(TestModels.TextOptions()).Fit(TestModels.Texts(ml));
        Assert.That(model.TrainingHistory, Is.Empty);
        Assert.That(log, Has.Some.Contains("No usable training rows (of 0 read)"));
        var scored = model.Transform(TestModels.Texts(ml, "The cat sat."));
        Assert.That(TestModels.Floats(scored, "Perplexity")[0], Is.GreaterThan(1f));
    }

    [Test]
    public void MissingGpuFailsClearlyUnlessFallbackToCpu()
    {
        var ml = new MLContext(seed: 1) { GpuDeviceId = 99, FallbackToCpu = false };
        var data = TestModels.Texts(ml, TestModels.Corpus);
        var e = Assert.Throws<InvalidOperationException>(() => ml.Qwen3Moe().FineTune(TestModels.TextOptions(1)).Fit(data));
        Assert.That(e!.Message, Does.Contain("MLContext.GpuDeviceId = 99").And.Contain("FallbackToCpu is false"));

        ml.FallbackToCpu = true;
        var log = TestModels.CaptureLog(ml);
        using var model = ml.Qwen3Moe().FineTune(TestModels.TextOptions(1)).Fit(data);
        Assert.That(log, Has.Some.Contains("running on the CPU"));
    }

    /// <summary>
    /// A run interrupted after its step-4 checkpoint (the step-6 one is removed, as if the process died before writing
    /// it) and fitted again with the same options resumes at step 4 and gives exactly the uninterrupted run's losses,
    /// at an epoch boundary (6 rows, 3 rows per step: 2 steps per epoch, shuffled per epoch from the seed).
    /// </summary>
    [Test]
    public void ResumeFromCheckpointContinuesWithTheSameLosses()
    {
        var dir = Directory.CreateTempSubdirectory("qwen3moe-resume-").FullName;
        try
        {
            var ml = new MLContext(seed: 1);
            var data = TestModels.Texts(ml, TestModels.Corpus);
            var options = TestModels.TextOptions(maxSteps: 7);
            options.CheckpointDirectory = dir;
            options.CheckpointEverySteps = 2;
            options.KeepCheckpoints = 5;
            using var full = ml.Qwen3Moe().FineTune(options).Fit(data);
            Assert.That(full.TrainingHistory.Count, Is.EqualTo(7));
            var saved = Directory.GetDirectories(dir).Select(Path.GetFileName).OrderBy(x => x).ToList();
            Assert.That(saved, Is.EqualTo(new[] { "step-00000002", "step-00000004", "step-00000006" }));
            Directory.Delete(Path.Combine(dir, "step-00000006"), recursive: true);

            var log = TestModels.CaptureLog(ml);
            using var resumed = ml.Qwen3Moe().FineTune(options).Fit(data);
            Assert.That(log, Has.Some.Contains("Resumed from the training checkpoint of step 4"));
            var expected = full.TrainingHistory.Skip(4).Select(r => r.Loss).ToArray();
            Assert.That(resumed.TrainingHistory.Select(r => r.Loss).ToArray(), Is.EqualTo(expected), "losses after the resume (bit-identical)");
            Assert.That(resumed.TrainingHistory[0].Step, Is.EqualTo(4));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// A resume never continues from a checkpoint whose data position this data never reaches at its step, and a folder
    /// of only damaged checkpoints stops the fit (naming them) unless OnDamagedCheckpoints = StartFresh.
    /// </summary>
    [Test]
    public void ImpossibleOrDamagedCheckpointsAreNotResumed()
    {
        var dir = Directory.CreateTempSubdirectory("qwen3moe-damaged-").FullName;
        try
        {
            var ml = new MLContext(seed: 1);
            var data = TestModels.Texts(ml, TestModels.Corpus);
            var options = TestModels.TextOptions(maxSteps: 2);
            options.CheckpointDirectory = dir;
            options.CheckpointEverySteps = 1;
            using (ml.Qwen3Moe().FineTune(options).Fit(data)) { }
            var newest = Path.Combine(dir, "step-00000002");
            var manifest = Path.Combine(newest, "manifest.json");
            var text = File.ReadAllText(manifest);
            File.WriteAllText(manifest, System.Text.RegularExpressions.Regex.Replace(text, "\"batch_index\": [0-9]+", "\"batch_index\": 5"));
            var e = Assert.Throws<InvalidDataException>(() => ml.Qwen3Moe().FineTune(options).Fit(data))!;
            Assert.That(e.Message, Does.Contain("batch 5 of epoch 1").And.Contain("never reaches"));
            File.WriteAllText(manifest, text);

            foreach (var folder in Directory.GetDirectories(dir))
            {
                var weights = Path.Combine(folder, "model.safetensors");
                var bytes = File.ReadAllBytes(weights);
                bytes[^1] ^= 1;
                File.WriteAllBytes(weights, bytes);
            }
            e = Assert.Throws<InvalidDataException>(() => ml.Qwen3Moe().FineTune(options).Fit(data))!;
            Assert.That(e.Message, Does.Contain("step-00000001").And.Contain("step-00000002").And.Contain("none is complete"));

            options.OnDamagedCheckpoints = DamagedCheckpointPolicy.StartFresh;
            using var fresh = ml.Qwen3Moe().FineTune(options).Fit(data);
            Assert.That(fresh.TrainingHistory.Select(r => r.Step), Is.EqualTo(new[] { 0, 1 }), "started from step 0");
            Assert.That(TrainingCheckpoint.Verify(newest), Is.EqualTo(2), "the damaged checkpoints were replaced");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void ActivationCheckpointingTrainsToTheSameLosses()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, TestModels.Corpus);
        var plain = TestModels.TextOptions(1);
        var recomputed = TestModels.TextOptions(1);
        recomputed.ActivationCheckpointing = true;
        using var a = ml.Qwen3Moe().FineTune(plain).Fit(data);
        using var b = ml.Qwen3Moe().FineTune(recomputed).Fit(data);
        Assert.That(b.TrainingHistory.Count, Is.EqualTo(a.TrainingHistory.Count).And.GreaterThan(0));
        for (int i = 0; i < a.TrainingHistory.Count; i++)
            Assert.That(b.TrainingHistory[i].Loss, Is.EqualTo(a.TrainingHistory[i].Loss).Within(1e-5).Percent, $"step {i}");
    }

    /// <summary>The estimator, fed the golden batch as a token-ids column with the reference AdamW settings, follows HF + torch's loss trajectory.</summary>
    [Test]
    public void TokenIdsTrainingReproducesTheGoldenAdamWTrajectory()
    {
        var fixture = GoldenFixture.Tiny;
        var adamw = fixture.Json.GetProperty("adamw");
        var expected = fixture.Expected("adamw_loss_trajectory").data<float>().ToArray();
        using var ids = fixture.Expected("input_ids");
        var rows = Enumerable.Range(0, (int)ids.shape[0]).Select(r => new IdsRow { Ids = ids[r].data<long>().ToArray() }).ToList();
        var ml = new MLContext(seed: 1);
        var options = new Qwen3MoeEstimator.Options
        {
            ModelPath = fixture.ModelFolder,
            TokenIdsColumnName = "Ids",
            BatchSize = rows.Count,
            MaxEpochs = expected.Length,
            Shuffle = false,
            LearningRate = adamw.GetProperty("lr").GetDouble(),
            AdamBetas = adamw.GetProperty("betas").EnumerateArray().Select(e => e.GetDouble()).ToArray(),
            AdamEps = adamw.GetProperty("eps").GetDouble(),
            WeightDecay = adamw.GetProperty("weight_decay").GetDouble(),
            ClipNorm = adamw.GetProperty("clip_grad_norm").GetDouble(),
            LearningRateSchedule = LearningRateScheduleKind.Constant,
            WarmupRatio = 0,
            IncludeAuxiliaryLoss = false,
        };
        using var model = ml.Qwen3Moe().FineTune(options).Fit(ml.Data.LoadFromEnumerable(rows));
        var losses = model.TrainingHistory.Select(s => s.Loss).ToArray();
        Assert.That(losses, Has.Length.EqualTo(expected.Length));
        for (int i = 0; i < expected.Length; i++)
            TensorAssert.RelativelyClose(losses[i], expected[i], 1e-4, $"loss before AdamW step {i}");
    }

    /// <summary>ML.NET's SchemaShape.Create(DataViewSchema) is internal; tests reach it by reflection.</summary>
    internal static SchemaShape ShapeOf(IDataView data) =>
        (SchemaShape)typeof(SchemaShape).GetMethod("Create", BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic,
            new[] { typeof(DataViewSchema) })!
            .Invoke(null, new object[] { data.Schema })!;
}
