using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training;

public class CausalLMTrainerTests
{
    private static Qwen3MoeForCausalLM NewModel(Qwen3MoeForCausalLMParameters? p = null, ScalarType dtype = ScalarType.Float32)
    {
        var m = new Qwen3MoeForCausalLM(p ?? Qwen3MoeForCausalLMTests.TinyParameters(), dtype: dtype);
        m.InitializeWeights(11);
        return m;
    }

    private static CausalLMBatch Batch(Tensor ids) => new() { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };

    /// <summary>The token-weighted LM loss accumulates exactly (the load-balancing loss is per batch by design, so it is off here).</summary>
    [Test]
    public void AccumulatedHalvesEqualOneFullBatch()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var ids = randint(0, 50, new long[] { 4, 10 }, dtype: ScalarType.Int64);
        var options = new TrainingOptions { TotalSteps = 3, LearningRate = 1e-2, IncludeAuxiliaryLoss = false };
        using var a = NewModel();
        using var b = NewModel();
        using var ea = new SingleStageExecutor(a);
        using var eb = new SingleStageExecutor(b);
        using var ta = new CausalLMTrainer(ea, options);
        using var tb = new CausalLMTrainer(eb, options);
        for (int step = 0; step < 3; step++)
        {
            var full = ta.TrainStep(new[] { Batch(ids) });
            var halves = tb.TrainStep(new[] { Batch(ids.narrow(0, 0, 2)), Batch(ids.narrow(0, 2, 2)) });
            TensorAssert.RelativelyClose(halves.Loss, full.Loss, 1e-5, $"loss at step {step}");
            Assert.That(halves.TargetTokens, Is.EqualTo(4 * 9));
        }
        var pa = a.UniqueNamedParameters();
        var pb = b.UniqueNamedParameters();
        for (int i = 0; i < pa.Count; i++) TensorAssert.Close(pb[i].Parameter, pa[i].Parameter, 1e-5, pa[i].Name);
    }

    [Test]
    public void AddedVocabularyOnlyTrainsOnlyTheNewSplit()
    {
        using var scope = NewDisposeScope();
        var p = Qwen3MoeForCausalLMTests.TinyParameters();
        p = p with { Model = p.Model with
            { SplitVocabSize = new Dictionary<string, int> { ["default"] = 50, ["added"] = 6 }, SplitVocabOrder = new[] { "default", "added" } } };
        using var model = NewModel(p);
        var before = model.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter.detach().clone());
        using var ex = new SingleStageExecutor(model);
        using var trainer = new
            CausalLMTrainer(ex, new TrainingOptions { TotalSteps = 2, Trainable = TrainableParameters.AddedVocabularyOnly, LearningRate = 1e-2 });
        var ids = tensor(new long[] { 1, 52, 3, 55, 50, 7, 53, 2 }).unsqueeze(0);
        trainer.TrainStep(new[] { Batch(ids) });
        foreach (var (name, param) in model.UniqueNamedParameters())
        {
            bool changed = !param.equal(before[name]).all().item<bool>();
            Assert.That(changed, Is.EqualTo(name.EndsWith(".added.weight")), name);
        }
    }

    [Test]
    public void NonFiniteLossStopsAndKeepsTheWeights()
    {
        using var scope = NewDisposeScope();
        using var model = NewModel();
        var before = model.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter.detach().clone());
        using (no_grad()) model.UniqueNamedParameters().First(x => x.Name.EndsWith("norm.weight")).Parameter[0] = float.NaN;
        var poisoned = model.UniqueNamedParameters().First(x => x.Name.EndsWith("norm.weight")).Name;
        using var ex = new SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(ex, new TrainingOptions { TotalSteps = 2 });
        var ids = randint(0, 50, new long[] { 2, 6 }, dtype: ScalarType.Int64);
        var e = Assert.Throws<InvalidOperationException>(() => trainer.TrainStep(new[] { Batch(ids) }))!;
        Assert.That(e.Message, Does.Contain("step 0").And.Contain("non-finite"));
        foreach (var (name, param) in model.UniqueNamedParameters().Where(x => x.Name != poisoned))
            TensorAssert.Equal(param, before[name], name);
    }

    [Test]
    public void SkipStepPolicyGoesOn()
    {
        using var scope = NewDisposeScope();
        using var model = NewModel();
        using (no_grad()) model.UniqueNamedParameters().First(x => x.Name.EndsWith("norm.weight")).Parameter[0] = float.PositiveInfinity;
        using var ex = new SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(ex, new TrainingOptions { TotalSteps = 2, OnNonFinite = NonFinitePolicy.SkipStep });
        var r = trainer.TrainStep(new[] { Batch(randint(0, 50, new long[] { 2, 6 }, dtype: ScalarType.Int64)) });
        Assert.That(r.Skipped, Is.True);
        Assert.That(trainer.Step, Is.EqualTo(1));
    }

    [Test]
    public void Bfloat16ModelWithFloat32MasterWeightsLearns()
    {
        using var scope = NewDisposeScope();
        using var model = NewModel(dtype: ScalarType.BFloat16);
        using var ex = new SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(ex, new TrainingOptions { TotalSteps = 20, LearningRate = 3e-3, Schedule = LearningRateScheduleKind.Constant });
        Assert.That(trainer.MasterWeights, Is.Not.Null);
        Assert.That(trainer.MasterWeights!.All(m => m.dtype == ScalarType.Float32), Is.True);
        var batch = Batch(randint(0, 50, new long[] { 2, 12 }, dtype: ScalarType.Int64));
        var first = trainer.TrainStep(new[] { batch }).Loss;
        double last = first;
        for (int i = 1; i < 20; i++) last = trainer.TrainStep(new[] { batch }).Loss;
        Assert.That(last, Is.LessThan(first * 0.7), $"memorising one batch: {first} -> {last}");
        Assert.That(model.DType, Is.EqualTo(ScalarType.BFloat16));
    }

    [TestCase(LearningRateScheduleKind.Cosine, new[] { 0.5, 1.0, 1.0, 0.55, 0.1 })]
    [TestCase(LearningRateScheduleKind.Linear, new[] { 0.5, 1.0, 1.0, 0.55, 0.1 })]
    [TestCase(LearningRateScheduleKind.Constant, new[] { 0.5, 1.0, 1.0, 1.0, 1.0 })]
    public void ScheduleWarmsUpThenDecays(LearningRateScheduleKind kind, double[] expected)
    {
        var s = new LearningRateSchedule(1.0, 2, 5, kind, 0.1);
        // steps 0,1 warm up; step 2 peak; cosine/linear midpoint at step 3 both give 0.55; the last step reaches the minimum
        Assert.That(Enumerable.Range(0, 5).Select(s.At), Is.EqualTo(expected).Within(1e-12));
    }

    [Test]
    public void MaskedAuxiliaryLossTrainsAndScoringReturnsLiveTensors()
    {
        using var scope = NewDisposeScope();
        using var model = NewModel();
        using var ex = new SingleStageExecutor(model);
        var ids = randint(0, 50, new long[] { 2, 8 }, dtype: ScalarType.Int64);
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }).reshape(2, 8);
        var batch = new CausalLMBatch { InputIds = ids, AttentionMask = mask, Labels = CausalLMLoss.ShiftLabels(ids, mask) };
        using var trainer = new CausalLMTrainer(ex, new TrainingOptions { TotalSteps = 1 });
        var r = trainer.TrainStep(new[] { batch });
        Assert.That(double.IsFinite(r.AuxiliaryLoss) && r.AuxiliaryLoss > 0, Is.True, $"aux loss {r.AuxiliaryLoss}");
        Assert.That(r.TargetTokens, Is.EqualTo(7 + 4));
        using var nll = ex.Score(batch);
        Assert.That(nll.shape, Is.EqualTo(new long[] { 2, 8 }));
        Assert.That(nll[1, 4].item<float>(), Is.EqualTo(0f), "no target after the last real token");
        Assert.That(nll[0, 0].item<float>(), Is.GreaterThan(0f));
    }
}
