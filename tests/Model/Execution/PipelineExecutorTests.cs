using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using static TorchSharp.torch;
using F = Microsoft.ML.Qwen3Moe.Tests.Model.Execution.PipelineFixtures;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Execution;

public class PipelineExecutorTests
{
    /// <summary>
    /// Every point of 1..4 stages x 1..8 micro-batches for both schedules (about 10 s on 2 idle cores); virtual layers
    /// (pre/post) and dense/sparse mixes vary with the case.
    /// </summary>
    private static IEnumerable<TestCaseData> Grid()
    {
        foreach (var schedule in new[] { PipelineScheduleKind.GPipe, PipelineScheduleKind.OneForwardOneBackward })
            for (int n = 1; n <= 4; n++)
                for (int m = 1; m <= 8; m++)
                    yield return new TestCaseData(schedule, n, m, (n + m) % 2, m / 2 % 2, n % 2 == 0 ? 1 : 2);
    }

    [TestCaseSource(nameof(Grid))]
    public void TrainingStepMatchesTheUnpipelinedModel(PipelineScheduleKind schedule, int stages, int microBatches, int pre, int post, int sparseStep)
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(pre: pre, post: post, sparseStep: sparseStep);
        var batch = F.Batch(Math.Max(2, microBatches)); // one row per micro-batch (odd rows padded)
        long targets = F.Targets(batch);
        using var whole = F.Whole(p);
        var expected = new SingleStageExecutor(whole).ForwardBackward(batch, targets, 0);
        var parts = F.Stages(p, stages);
        try
        {
            using var pipeline = new PipelineExecutor(parts, schedule, microBatches);
            var actual = pipeline.ForwardBackward(batch, targets, 0);
            TensorAssert.RelativelyClose(actual.NllSum.item<float>(), expected.NllSum.item<float>(), 1e-6, "Σ NLL");
            if (microBatches == 1)
                TensorAssert.RelativelyClose(actual.AuxLoss.item<float>(), expected.AuxLoss.item<float>(), 1e-6,
                "aux over one micro-batch = aux over the batch");
            F.AssertSameGradients(parts, whole, 1e-5, $"{schedule} {stages}x{microBatches}");
        }
        finally
        {
            foreach (var s in parts) s.Dispose();
        }
    }

    /// <summary>With the load-balancing loss on: one micro-batch equals the whole batch; several equal accumulation over the micro-batches.</summary>
    [TestCase(PipelineScheduleKind.GPipe, 3, 1)]
    [TestCase(PipelineScheduleKind.GPipe, 3, 4)]
    [TestCase(PipelineScheduleKind.OneForwardOneBackward, 3, 4)]
    [TestCase(PipelineScheduleKind.OneForwardOneBackward, 2, 3)]
    public void AuxiliaryLossIsHfFormulaPerMicroBatch(PipelineScheduleKind schedule, int stages, int microBatches)
    {
        using var scope = NewDisposeScope();
        const double coefficient = 0.5;
        var p = F.Parameters(pre: 1, post: 1, auxCoefficient: coefficient);
        var batch = F.Batch(2 * microBatches, seed: 9);
        long targets = F.Targets(batch);
        using var whole = F.Whole(p);
        var reference = new SingleStageExecutor(whole);
        double nll = 0, aux = 0;
        for (int i = 0; i < microBatches; i++)
        {
            var sums = reference.ForwardBackward(F.Rows(batch, 2 * i, 2), targets, coefficient / microBatches);
            nll += sums.NllSum.item<float>();
            aux += sums.AuxLoss.item<float>() / microBatches;
        }
        var parts = F.Stages(p, stages);
        try
        {
            using var pipeline = new PipelineExecutor(parts, schedule, microBatches);
            var actual = pipeline.ForwardBackward(batch, targets, coefficient);
            TensorAssert.RelativelyClose(actual.NllSum.item<float>(), nll, 1e-6, "Σ NLL");
            TensorAssert.RelativelyClose(actual.AuxLoss.item<float>(), aux, 1e-6, "mean aux over micro-batches");
            Assert.That(aux, Is.GreaterThan(0.5), "the aux loss is not trivially 0");
            F.AssertSameGradients(parts, whole, 1e-5, $"{schedule} {stages}x{microBatches} with aux");
        }
        finally
        {
            foreach (var s in parts) s.Dispose();
        }
    }

    [TestCase(PipelineScheduleKind.GPipe)]
    [TestCase(PipelineScheduleKind.OneForwardOneBackward)]
    public void TrainerDrivenByThePipelineGivesTheSameLosses(PipelineScheduleKind schedule)
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 4, pre: 1, auxCoefficient: 0.1);
        var batch = F.Batch(4, seed: 21);
        var options = new TrainingOptions { TotalSteps = 3, LearningRate = 1e-2 };
        using var whole = F.Whole(p);
        using var single = new SingleStageExecutor(whole);
        using var reference = new CausalLMTrainer(single, options);
        var parts = F.Stages(p, 3);
        try
        {
            using var pipeline = new PipelineExecutor(parts, schedule, 2);
            using var trainer = new CausalLMTrainer(pipeline, options);
            for (int step = 0; step < 3; step++)
            {
                // The micro-batches of the pipeline are the reference's accumulated batches (same aux semantics).
                var expected = reference.TrainStep(new[] { F.Rows(batch, 0, 2), F.Rows(batch, 2, 2) });
                var actual = trainer.TrainStep(new[] { batch });
                TensorAssert.RelativelyClose(actual.Loss, expected.Loss, 1e-5, $"loss at step {step}");
                TensorAssert.RelativelyClose(actual.AuxiliaryLoss, expected.AuxiliaryLoss, 1e-5, $"aux at step {step}");
                TensorAssert.RelativelyClose(actual.GradientNorm, expected.GradientNorm, 1e-5, $"gradient norm at step {step}");
            }
            var after = whole.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
            foreach (var (name, param) in parts.SelectMany(s => s.UniqueNamedParameters())) TensorAssert.Close(param, after[name], 1e-5, name);
        }
        finally
        {
            foreach (var s in parts) s.Dispose();
        }
    }

    [Test]
    public void ScoringMatchesTheUnpipelinedModel()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters();
        var batch = F.Batch(6);
        using var whole = F.Whole(p);
        var expected = new SingleStageExecutor(whole).Score(batch);
        var parts = F.Stages(p, 3);
        try
        {
            using var pipeline = new PipelineExecutor(parts, PipelineScheduleKind.OneForwardOneBackward, 3);
            var actual = pipeline.Score(batch);
            Assert.That(actual.requires_grad, Is.False);
            TensorAssert.Close(actual, expected, 1e-5, "per-token NLL");
            using var all = pipeline.Forward(new CausalLMBatch { InputIds = batch.InputIds, AttentionMask = batch.AttentionMask, ReturnLogits = true });
            using var o = whole.forward(new CausalLMBatch { InputIds = batch.InputIds, AttentionMask = batch.AttentionMask, ReturnLogits = true });
            TensorAssert.Close(all.Logits!, o.Logits!, 1e-5, "logits");
            Assert.That(all.RouterLogits, Has.Count.EqualTo(o.RouterLogits.Count));
            for (int l = 0; l < o.RouterLogits.Count; l++) TensorAssert.Close(all.RouterLogits[l], o.RouterLogits[l], 1e-5, $"router logits of layer {l}");
        }
        finally
        {
            foreach (var s in parts) s.Dispose();
        }
    }

    [Test]
    public void OneForwardOneBackwardProgramsAreTheTextbookOnes()
    {
        string Program(int stage) => string.Join(" ", PipelineSchedule.StageProgram(PipelineScheduleKind.OneForwardOneBackward, stage, 2, 4, training: true));
        Assert.That(Program(0), Is.EqualTo("F0@0 F1@0 B0@0 F2@0 B1@0 F3@0 B2@0 B3@0"));
        Assert.That(Program(1), Is.EqualTo("F0@1 B0@1 F1@1 B1@1 F2@1 B2@1 F3@1 B3@1"));
        var gpipe = string.Join(" ", PipelineSchedule.StageProgram(PipelineScheduleKind.GPipe, 0, 2, 3, training: true));
        Assert.That(gpipe, Is.EqualTo("F0@0 F1@0 F2@0 B2@0 B1@0 B0@0"));
    }

    [TestCase(PipelineScheduleKind.GPipe)]
    [TestCase(PipelineScheduleKind.OneForwardOneBackward)]
    public void SchedulesRunEveryActionOnceAfterItsInputsAndBoundWhatIsInFlight(PipelineScheduleKind kind)
    {
        for (int n = 1; n <= 4; n++)
            for (int m = 1; m <= 8; m++)
            {
                var actions = PipelineSchedule.Build(kind, n, m, training: true);
                Assert.That(actions, Is.Unique);
                Assert.That(actions, Has.Count.EqualTo(2 * n * m));
                var done = new HashSet<PipelineAction>();
                var inFlight = new int[n];
                var peak = new int[n];
                foreach (var a in actions)
                {
                    if (a.Kind == PipelineActionKind.Forward)
                    {
                        Assert.That(a.Stage == 0 || done.Contains(a with { Stage = a.Stage - 1 }), $"{a} before its input");
                        peak[a.Stage] = Math.Max(peak[a.Stage], ++inFlight[a.Stage]);
                    }
                    else
                    {
                        Assert.That(done.Contains(a with { Kind = PipelineActionKind.Forward }), $"{a} before its forward");
                        Assert.That(a.Stage == n - 1 || done.Contains(a with { Stage = a.Stage + 1 }), $"{a} before its output gradient");
                        inFlight[a.Stage]--;
                    }
                    done.Add(a);
                }
                for (int s = 0; s < n; s++)
                    Assert.That(peak[s], Is.EqualTo(kind == PipelineScheduleKind.GPipe ? m : Math.Min(n - s, m)),
                        $"micro-batches in flight on stage {s} of {n}x{m}");
                var forwardOnly = PipelineSchedule.Build(kind, n, m, training: false);
                Assert.That(forwardOnly.All(a => a.Kind == PipelineActionKind.Forward) && forwardOnly.Count == n * m, Is.True);
            }
    }

    /// <summary>Rows that do not split evenly (6 rows, 4 micro-batches; 3 rows, 4 micro-batches) still give the unpipelined gradients and scores.</summary>
    [TestCase(6)]
    [TestCase(3)]
    public void UnevenBatchesMatchTheUnpipelinedModel(int rows)
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters();
        var batch = F.Batch(rows);
        long targets = F.Targets(batch);
        using var whole = F.Whole(p);
        var expected = new SingleStageExecutor(whole).ForwardBackward(batch, targets, 0);
        var expectedScores = new SingleStageExecutor(whole).Score(batch);
        var parts = F.Stages(p, 2);
        try
        {
            using var pipeline = new PipelineExecutor(parts, PipelineScheduleKind.OneForwardOneBackward, 4);
            var actual = pipeline.ForwardBackward(batch, targets, 0);
            TensorAssert.RelativelyClose(actual.NllSum.item<float>(), expected.NllSum.item<float>(), 1e-6, "Σ NLL");
            F.AssertSameGradients(parts, whole, 1e-5, $"{rows} rows over 4 micro-batches");
            TensorAssert.Close(pipeline.Score(batch), expectedScores, 1e-5, "scores");
        }
        finally
        {
            foreach (var s in parts) s.Dispose();
        }
    }

    [Test]
    public void InvalidPipelinesAreRejected()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters();
        var parts = F.Stages(p, 2);
        try
        {
            Assert.That(() => new PipelineExecutor(parts.Reverse().ToArray(), PipelineScheduleKind.GPipe, 1),
                Throws.ArgumentException.With.Message.Contains("Stage 0"));
            Assert.That(() => new PipelineExecutor(parts.Take(1).ToArray(), PipelineScheduleKind.GPipe, 1), Throws.ArgumentException);
            Assert.That(() => new PipelineExecutor(parts, PipelineScheduleKind.GPipe, 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
        }
        finally
        {
            foreach (var s in parts) s.Dispose();
        }
    }
}
