using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

/// <summary><see cref="Qwen3MoeEstimator.Options.PackSequences"/> through <c>Fit</c> on the tiny text model.</summary>
public class SequencePackingTests
{
    /// <summary>Twelve short rows (6 to 13 tokens), so that rows of 24 tokens hold two or three of them.</summary>
    private static readonly string[] s_rows = TestModels.Corpus.Concat(TestModels.Corpus.Select(s => s + " Then it slept by the fire.")).ToArray();

    private static Qwen3MoeEstimator.Options Options(int maxSteps)
    {
        var options = TestModels.TextOptions(maxSteps);
        options.PackSequences = true;
        options.MaxSequenceLength = 24;
        options.BatchSize = 2;
        return options;
    }

    /// <summary>
    /// A packed epoch trains on every row once, predicting every token of a row but its first (none across rows): the
    /// target tokens of its steps add up to Σ (length - 1), in fewer steps than unpacked; the log says rows, tokens and padding.
    /// </summary>
    [Test]
    public void PackedFitTrainsEveryRowOnceAndReportsThePaddingSaved()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, s_rows);
        var log = TestModels.CaptureLog(ml);
        var options = Options(maxSteps: 0);
        options.MaxEpochs = 1;
        using var packed = ml.Qwen3Moe().FineTune(options).Fit(data);
        var line = log.Single(m => m.Contains("PackSequences:", StringComparison.Ordinal));
        var match = System.Text.RegularExpressions.Regex.Match(line,
            @"PackSequences: 12 rows \((\d+) tokens\) packed into (\d+) rows of up to 24 tokens; " +
            @"padding ([\d.]+)% of the batch tokens instead of ([\d.]+)% unpacked");
        Assert.That(match.Success, Is.True, line);
        long tokens = long.Parse(match.Groups[1].Value);
        int rows = int.Parse(match.Groups[2].Value);
        Assert.That(rows, Is.InRange((int)Math.Ceiling(tokens / 24.0), 6), "at least two rows per packed row on average");
        double packedPadding = double.Parse(match.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture);
        double unpackedPadding = double.Parse(match.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(packedPadding, Is.LessThan(unpackedPadding), "packing saves padding");
        Assert.That(packedPadding, Is.EqualTo(100.0 * (rows * 24 - tokens) / (rows * 24)).Within(0.05), "packed batches are padded to MaxSequenceLength");
        Assert.That(packed.TrainingHistory, Has.Count.EqualTo((rows + 1) / 2), "one step per two packed rows");
        Assert.That(packed.TrainingHistory.Sum(s => s.TargetTokens), Is.EqualTo(tokens - 12), "every token of a row but its first, once");
        Assert.That(log, Has.Some.Contains($"Fine-tuning on {rows} packed rows ({tokens} tokens)"));
        Assert.That(packed.TrainingHistory.All(s => double.IsFinite(s.Loss)), Is.True);

        options.PackSequences = false;
        using var unpacked = ml.Qwen3Moe().FineTune(options).Fit(data);
        Assert.That(unpacked.TrainingHistory, Has.Count.EqualTo(6), "12 rows, 2 per step");
        Assert.That(unpacked.TrainingHistory.Sum(s => s.TargetTokens), Is.EqualTo(tokens - 12), "the same tokens are predicted unpacked");
    }

    /// <summary>
    /// A packed run interrupted after its step-4 checkpoint resumes there and gives exactly the uninterrupted run's
    /// losses: the packing is deterministic and the packed rows are shuffled from (seed, epoch) alone.
    /// </summary>
    [Test]
    public void PackedRunResumesFromACheckpointWithTheSameLosses()
    {
        var dir = Directory.CreateTempSubdirectory("qwen3moe-packed-resume-").FullName;
        try
        {
            var ml = new MLContext(seed: 1);
            var data = TestModels.Texts(ml, s_rows);
            var options = Options(maxSteps: 7);
            options.MaxEpochs = 5;
            options.CheckpointDirectory = dir;
            options.CheckpointEverySteps = 2;
            options.KeepCheckpoints = 5;
            using var full = ml.Qwen3Moe().FineTune(options).Fit(data);
            Assert.That(full.TrainingHistory.Count, Is.EqualTo(7));
            Directory.Delete(Path.Combine(dir, "step-00000006"), recursive: true);

            var log = TestModels.CaptureLog(ml);
            using var resumed = ml.Qwen3Moe().FineTune(options).Fit(data);
            Assert.That(log, Has.Some.Contains("Resumed from the training checkpoint of step 4"));
            Assert.That(resumed.TrainingHistory.Select(r => r.Loss).ToArray(), Is.EqualTo(full.TrainingHistory.Skip(4).Select(r => r.Loss).ToArray()),
                "losses after the resume (bit-identical)");
            Assert.That(resumed.TrainingHistory.Select(r => r.TargetTokens), Is.EqualTo(full.TrainingHistory.Skip(4).Select(r => r.TargetTokens)),
                "the same packed rows");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
