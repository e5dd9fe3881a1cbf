using Microsoft.ML.Qwen3Moe.Kernels;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

/// <summary>
/// Issue 17 on the estimator: training batches padded to a length bucket (<see cref="Qwen3MoeScoringOptions.PadToMultipleOf"/>)
/// train exactly as unpadded ones (padding enters neither the loss nor the MoE statistics), and the kernel choices given to the
/// fit are those of the model it builds.
/// </summary>
[TestFixture]
public class LengthBucketTests
{
    private static readonly string[] Rows =
    {
        "The cat sat on the mat.",
        "A much longer row, so that the others in its batch are padded: the dog sat on the log by the door all day.",
        "Hi there",
        "The dog sat on the log.",
        "Twelve tokens or so, give or take a few of them here.",
        "A cat and a dog sat on the mat.",
    };

    [Test]
    public void BucketPaddingTrainsLikeNoPadding()
    {
        var (plainHistory, plainCounts) = Fit(padToMultipleOf: 1);
        var (bucketHistory, bucketCounts) = Fit(padToMultipleOf: 64);
        Assert.That(bucketHistory, Has.Count.EqualTo(plainHistory.Count));
        for (int i = 0; i < plainHistory.Count; i++)
        {
            // float32 on the CPU: the padded batches differ only in their shape, so only summation order can move a value
            Assert.That(bucketHistory[i].TargetTokens, Is.EqualTo(plainHistory[i].TargetTokens), $"step {i}");
            Assert.That(bucketHistory[i].Loss, Is.EqualTo(plainHistory[i].Loss).Within(1e-5), $"step {i} loss");
            Assert.That(bucketHistory[i].AuxiliaryLoss, Is.EqualTo(plainHistory[i].AuxiliaryLoss).Within(1e-5),
                $"step {i} load-balancing loss (over real tokens only)");
            Assert.That(bucketHistory[i].GradientNorm, Is.EqualTo(plainHistory[i].GradientNorm).Within(1e-4 * plainHistory[i].GradientNorm),
                $"step {i} gradient norm");
        }
        Assert.That(bucketCounts, Is.EqualTo(plainCounts), "the training routing counts leave padding out");
    }

    /// <summary>WarmUpLengthBuckets runs one forward/backward per bucket width before the first step and leaves no trace in the run.</summary>
    [Test]
    public void WarmingUpTheBucketWidthsChangesNothingButTheLog()
    {
        var (warmHistory, warmCounts, warmLog) = Fit(padToMultipleOf: 8, warmUp: true);
        var (coldHistory, coldCounts, coldLog) = Fit(padToMultipleOf: 8, warmUp: false);
        Assert.That(warmHistory, Is.EqualTo(coldHistory), "identical losses, gradient norms and tokens at every step");
        Assert.That(warmCounts, Is.EqualTo(coldCounts), "the warm-up's routing counts are discarded");
        var line = warmLog.Single(m => m.Contains("WarmUpLengthBuckets:", StringComparison.Ordinal));
        var match = System.Text.RegularExpressions.Regex.Match(line, @"WarmUpLengthBuckets: (\d+) batch width\(s\) \(([\d, ]+)\) warmed up");
        Assert.That(match.Success, Is.True, line);
        var widths = match.Groups[2].Value.Split(", ").Select(int.Parse).ToArray();
        Assert.That(widths, Has.Length.EqualTo(int.Parse(match.Groups[1].Value)).And.Length.GreaterThan(1), "the rows fall into several buckets");
        Assert.That(widths, Is.Ordered.Ascending.And.All.Matches<int>(w => w % 8 == 0), "bucket widths, multiples of 8");
        Assert.That(coldLog, Has.None.Contains("WarmUpLengthBuckets:"));
    }

    [Test]
    public void TheFitsKernelChoicesAreTheModels()
    {
        var ml = new MLContext(seed: 1);
        var options = TestModels.TextOptions(maxSteps: 1);
        Assert.That(options.Kernels, Is.EqualTo(KernelOptions.Default));
        options.Kernels = new KernelOptions { FlashAttention = false, FusedRmsNorm = false };
        using var model = ml.Qwen3Moe().FineTune(options).Fit(TestModels.Texts(ml, Rows));
        Assert.That(model.Stages[0].Model.Kernels, Is.EqualTo(options.Kernels));
    }

    [Test]
    public void InvalidBucketOrKernelsAreRejectedNamingTheOption()
    {
        var ml = new MLContext(seed: 1);
        var options = TestModels.TextOptions();
        options.PadToMultipleOf = 0;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(options));
        Assert.That(e!.ParamName, Is.EqualTo("PadToMultipleOf"));
        options = TestModels.TextOptions();
        options.Kernels = null!;
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().FineTune(options));
        Assert.That(e!.ParamName, Is.EqualTo("Kernels"));
    }

    private static (IReadOnlyList<Training.TrainStepResult> History, long[] Counts) Fit(int padToMultipleOf)
    {
        var (history, counts, _) = Fit(padToMultipleOf, warmUp: true);
        return (history, counts);
    }

    private static (IReadOnlyList<Training.TrainStepResult> History, long[] Counts, List<string> Log) Fit(int padToMultipleOf, bool warmUp)
    {
        var ml = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(ml);
        var options = TestModels.TextOptions(maxSteps: 3);
        options.PadToMultipleOf = padToMultipleOf;
        options.WarmUpLengthBuckets = warmUp;
        options.Shuffle = false;
        using var model = ml.Qwen3Moe().FineTune(options).Fit(TestModels.Texts(ml, Rows));
        using var counts = model.Stages[0].MoeTokensPerExpert.to(ScalarType.Int64);
        return (model.TrainingHistory, counts.data<long>().ToArray(), log);
    }
}
