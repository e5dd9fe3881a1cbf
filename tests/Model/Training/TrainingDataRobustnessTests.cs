using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training;

/// <summary>Bad batches give errors naming the tensor and shapes; a batch without targets trains without NaN.</summary>
public class TrainingDataRobustnessTests
{
    private static CausalLMBatch Make(long[] ids, long[]? labels = null, long[]? mask = null, long[]? positions = null)
    {
        Tensor Ids(long[] shape) => zeros(shape, dtype: ScalarType.Int64);
        return new CausalLMBatch
        {
            InputIds = Ids(ids),
            Labels = Ids(labels ?? ids),
            AttentionMask = mask is null ? null : ones(mask, dtype: ScalarType.Int64),
            PositionIds = positions is null ? null : Ids(positions),
        };
    }

    private static IEnumerable<TestCaseData> BadBatches()
    {
        yield return new TestCaseData(Make(new long[] { 0, 8 }), "Empty batch: InputIds has shape [0, 8]").SetArgDisplayNames("zero rows");
        yield return new TestCaseData(Make(new long[] { 2, 0 }), "Empty batch: InputIds has shape [2, 0]").SetArgDisplayNames("zero tokens");
        yield return new TestCaseData(Make(new long[] { 8 }, new long[] { 8 }),
            "InputIds must be 2-D [batch, sequence]; got shape [8]").SetArgDisplayNames("1-D ids");
        yield return new TestCaseData(Make(new long[] { 2, 8 }, labels: new long[] { 2, 7 }),
            "Labels has shape [2, 7] but InputIds has shape [2, 8]").SetArgDisplayNames("short labels");
        yield return new TestCaseData(Make(new long[] { 2, 8 }, labels: new long[] { 3, 8 }),
            "Labels has shape [3, 8] but InputIds has shape [2, 8]").SetArgDisplayNames("extra label row");
        yield return new TestCaseData(Make(new long[] { 2, 8 }, mask: new long[] { 2, 9 }),
            "AttentionMask has shape [2, 9] but InputIds has shape [2, 8]").SetArgDisplayNames("long mask");
        yield return new TestCaseData(Make(new long[] { 2, 8 }, mask: new long[] { 2, 8, 1 }),
            "AttentionMask has shape [2, 8, 1] but InputIds has shape [2, 8]").SetArgDisplayNames("3-D mask");
        yield return new TestCaseData(Make(new long[] { 2, 8 }, positions: new long[] { 1, 8 }),
            "PositionIds has shape [1, 8] but InputIds has shape [2, 8]").SetArgDisplayNames("one row of positions");
        yield return new TestCaseData(new CausalLMBatch { InputIds = zeros(new long[] { 2, 8 }, dtype: ScalarType.Int64), Labels = zeros(2, 8) },
            "Labels must be int64; got Float32 (shape [2, 8])")
            .SetArgDisplayNames("float labels");
    }

    [TestCaseSource(nameof(BadBatches))]
    public void BadBatchIsNamedInTraining(CausalLMBatch batch, string expected)
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(5));
        var before = t.Model.UniqueNamedParameters().Select(p => p.Parameter.detach().clone()).ToList();
        var e = Assert.Throws<ArgumentException>(() => t.Trainer.TrainStep(new[] { TinyTraining.Batch(1), batch }))!;
        Assert.That(e.Message, Does.Contain(expected));
        Assert.That(t.Trainer.Step, Is.Zero);
        var after = t.Model.UniqueNamedParameters();
        for (int i = 0; i < after.Count; i++) TensorAssert.Equal(after[i].Parameter, before[i], after[i].Name);
    }

    [TestCaseSource(nameof(BadBatches))]
    public void BadBatchIsNamedInScoring(CausalLMBatch batch, string expected)
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(5));
        var e = Assert.Throws<ArgumentException>(() => t.Executor.Score(batch).Dispose())!;
        Assert.That(e.Message, Does.Contain(expected));
    }

    [TestCase(50L)]
    [TestCase(-1L)]
    public void LabelOutsideTheVocabularyIsNamed(long label)
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(5));
        var b = TinyTraining.Batch(1);
        b.Labels![0, 3] = tensor(label);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => t.Trainer.TrainStep(new[] { b }))!;
        Assert.That(e.Message, Does.Contain($"Labels holds {label}, outside the vocabulary [0, 50)"));
    }

    [Test]
    public void NoStepWithoutBatches()
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(5));
        Assert.That(Assert.Throws<ArgumentException>(() => t.Trainer.TrainStep(Array.Empty<CausalLMBatch>()))!.Message, Does.Contain("at least one batch"));
    }

    [Test]
    public void BatchWithoutTargetsGivesZeroLossNotNaN()
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(5));
        var b = TinyTraining.Batch(1);
        var noTargets = new CausalLMBatch { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = full_like(b.Labels!, CausalLMLoss.IgnoreIndex) };
        var r = t.Trainer.TrainStep(new[] { noTargets });
        Assert.That(r.TargetTokens, Is.Zero);
        Assert.That(r.Loss, Is.EqualTo(0.0));
        Assert.That(double.IsFinite(r.GradientNorm) && double.IsFinite(r.AuxiliaryLoss), Is.True, $"norm {r.GradientNorm}, aux {r.AuxiliaryLoss}");
        Assert.That(r.Skipped, Is.False);
        foreach (var (name, p) in t.Model.UniqueNamedParameters()) Assert.That(p.isfinite().all().item<bool>(), Is.True, name);
        using var nll = t.Executor.Score(noTargets);
        Assert.That(nll.abs().sum().item<float>(), Is.EqualTo(0f), "scoring gives 0 where there is no target");
        using var mean = CausalLMLoss.Mean(nll, noTargets.Labels!);
        Assert.That(mean.item<float>(), Is.EqualTo(0f));
    }

    [Test]
    public void BatchWithoutTargetsDoesNotDiluteTheOthersInAccumulation()
    {
        var options = TinyTraining.Options(5) with { IncludeAuxiliaryLoss = false };
        using var a = new TinyTraining(seed: 3, options);
        using var b = new TinyTraining(seed: 3, options);
        var real = TinyTraining.Batch(1);
        var empty = TinyTraining.Batch(2);
        var noTargets = new CausalLMBatch { InputIds = empty.InputIds, Labels = full_like(empty.Labels!, CausalLMLoss.IgnoreIndex) };
        var alone = a.Trainer.TrainStep(new[] { real });
        var withEmpty = b.Trainer.TrainStep(new[] { real, noTargets });
        Assert.That(withEmpty.TargetTokens, Is.EqualTo(alone.TargetTokens));
        TensorAssert.RelativelyClose(withEmpty.Loss, alone.Loss, 1e-6, "loss");
        TensorAssert.RelativelyClose(withEmpty.GradientNorm, alone.GradientNorm, 1e-5, "gradient norm");
    }
}
