using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training;

/// <summary>
/// Our schedules against Hugging Face transformers' (<c>get_cosine_schedule_with_warmup</c>,
/// <c>get_linear_schedule_with_warmup</c>, <c>get_cosine_with_min_lr_schedule_with_warmup</c>), from
/// tests/Fixtures/schedules/hf_schedules.json (made by gen_schedules.py beside it with transformers 5.17).
/// <para>How the two map: HF's multiplier λ(s) applies at optimizer step s, so its first warm-up step has learning rate 0
/// and it reaches its floor at s = T, one step after its last. Ours skips that zero step and reaches the floor on the last
/// step it takes: with warm-up W, our step k uses HF's λ(k + 1) during warm-up (k &lt; W) and λ(k) after it, for an HF
/// schedule of T = our TotalSteps − 1 steps. The decay curve itself (cosine or linear, down to
/// <c>peak · MinRatio</c> = HF's <c>min_lr_rate</c>) is HF's exactly; MinRatio 0 is HF's plain cosine/linear.</para>
/// </summary>
public class LearningRateScheduleTests
{
    private sealed record HfCase(string Function, int Warmup, int Total, double MinLrRate, double[] Lambda)
    {
        public LearningRateScheduleKind Kind => Function.Contains("linear",
            StringComparison.Ordinal) ? LearningRateScheduleKind.Linear : LearningRateScheduleKind.Cosine;

        public override string ToString() => $"{Function}(W={Warmup}, T={Total}, min_lr_rate={MinLrRate})";

        /// <summary>HF's multiplier at our step <paramref name="k"/> (see the class comment).</summary>
        public double At(int k) => k < Warmup ? Lambda[k + 1] : Lambda[k];
    }

    private static IEnumerable<HfCase> HfCases()
    {
        var path = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "schedules", "hf_schedules.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new HfCase(
            c.GetProperty("function").GetString()!, c.GetProperty("num_warmup_steps").GetInt32(), c.GetProperty("num_training_steps").GetInt32(),
            c.GetProperty("min_lr_rate").GetDouble(), c.GetProperty("lr_lambda").EnumerateArray().Select(v => v.GetDouble()).ToArray())).ToList();
    }

    private static IEnumerable<TestCaseData> Cases() => HfCases().Select(c => new TestCaseData(c).SetArgDisplayNames(c.ToString()));

    [TestCaseSource(nameof(Cases))]
    public void MatchesHuggingFaceAtEveryStep(object hfCase)
    {
        var c = (HfCase)hfCase;
        const double peak = 3e-4;
        var ours = new LearningRateSchedule(peak, c.Warmup, c.Total + 1, c.Kind, c.MinLrRate);
        for (int k = 0; k <= c.Total; k++)
            Assert.That(ours.At(k), Is.EqualTo(peak * c.At(k)).Within(1e-12 * peak), $"step {k} of {c}");
    }

    [Test]
    public void FixtureCoversWarmupDecayAndFloor()
    {
        var cases = HfCases().ToList();
        Assert.That(cases.Select(c => c.Function).Distinct().Count(), Is.EqualTo(3));
        Assert.That(cases.Any(c => c.Warmup > 0 && c.MinLrRate > 0 && c.Kind == LearningRateScheduleKind.Cosine), Is.True);
        // cosine and linear differ away from the midpoint: the comparison above tells them apart
        var cos = cases.First(c => c.Function == "get_cosine_schedule_with_warmup" && c.Warmup == 3 && c.Total == 20);
        var lin = cases.First(c => c.Function == "get_linear_schedule_with_warmup" && c.Warmup == 3 && c.Total == 20);
        Assert.That(Math.Abs(cos.Lambda[7] - lin.Lambda[7]), Is.GreaterThan(0.05));
    }

    /// <summary>
    /// The estimator's defaults (cosine, MinLearningRateRatio 0.1) reach the trainer: the learning rates a tiny training run
    /// reports are HF's <c>get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate=0.1)</c>.
    /// </summary>
    [Test]
    public void EstimatorDefaultsTrainWithHuggingFacesCosineWithMinLr()
    {
        var hf = HfCases().Single(c => c.Function == "get_cosine_with_min_lr_schedule_with_warmup" && c.Warmup == 3 && c.Total == 20);
        var defaults = new Qwen3MoeEstimator.Options();
        Assert.That((defaults.LearningRateSchedule, defaults.MinLearningRateRatio), Is.EqualTo((LearningRateScheduleKind.Cosine, hf.MinLrRate)));
        defaults.WarmupRatio = hf.Warmup / (double)(hf.Total + 1);
        var options = defaults.ToTrainingOptions(totalSteps: hf.Total + 1);
        using var tiny = new TinyTraining(seed: 5, options);
        for (int k = 0; k <= hf.Total; k++)
        {
            using var scope = NewDisposeScope();
            var r = tiny.Trainer.TrainStep(TinyTraining.Batches(k));
            Assert.That(r.LearningRate, Is.EqualTo(options.LearningRate * hf.At(k)).Within(1e-12 * options.LearningRate), $"step {k}");
        }
    }
}
