using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training.Checkpoints;

/// <summary>Training N steps with a checkpoint at step k, then restoring into fresh objects, gives the uninterrupted run's losses exactly.</summary>
public class ExactResumeTests : CheckpointTestBase
{
    private const int Total = 7;
    private const int At = 3;

    [TestCase(ScalarType.Float32, 1, true, TestName = "ExactResume_Float32")]
    [TestCase(ScalarType.Float32, 1, false, TestName = "ExactResume_Float32_TorchSharpAdamW")]
    [TestCase(ScalarType.Float32, 2, true, TestName = "ExactResume_Float32_GradientAccumulation")]
    [TestCase(ScalarType.BFloat16, 1, true, TestName = "ExactResume_BFloat16_Float32MasterWeights")]
    [TestCase(ScalarType.BFloat16, 2, false, TestName = "ExactResume_BFloat16_MasterWeights_GradientAccumulation_TorchSharpAdamW")]
    public void ResumedRunGivesTheUninterruptedLosses(ScalarType dtype, int micro, bool fused)
    {
        var folder = Files.PathOf("ckpt");
        var options = TinyTraining.Options(Total) with { FusedOptimizer = fused };
        using var a = new TinyTraining(seed: 11, options, dtype);
        Assert.That(a.Trainer.MasterWeights is not null, Is.EqualTo(dtype != ScalarType.Float32));
        var expected = a.TrainUntil(At, micro);
        TrainingCheckpoint.Save(folder, a.Executor, a.Trainer, new DataPosition(0, At, "cursor-3"));
        using var drawnAfterSave = rand(4);
        expected.AddRange(a.TrainUntil(Total, micro));

        manual_seed(12345); // the restore must bring the generator back
        using var b = new TinyTraining(seed: 99, options, dtype); // other weights: the restore must overwrite them all
        var position = TrainingCheckpoint.Restore(folder, b.Executor, b.Trainer);
        Assert.That(position, Is.EqualTo(new DataPosition(0, At, "cursor-3")));
        Assert.That(b.Trainer.Step, Is.EqualTo(At));
        using var drawnAfterRestore = rand(4);
        TensorAssert.Equal(drawnAfterRestore, drawnAfterSave, "CPU generator");
        var resumed = b.TrainUntil(Total, micro);

        for (int s = At; s < Total; s++)
            Assert.That(resumed[s - At], Is.EqualTo(expected[s]), $"loss of step {s} (bit-identical expected)");
        AssertSameState(a, b);
    }

    /// <summary>The exact-resume assertion has teeth: without the optimizer moments the losses after the resume differ.</summary>
    [Test]
    public void ResumeWithoutOptimizerStateWouldDiffer()
    {
        var folder = Files.PathOf("ckpt");
        var options = TinyTraining.Options(Total);
        using var a = new TinyTraining(seed: 11, options);
        var expected = a.TrainUntil(At);
        TrainingCheckpoint.Save(folder, a.Executor, a.Trainer, new DataPosition(0, At));
        expected.AddRange(a.TrainUntil(Total));

        using var b = new TinyTraining(seed: 11, options);
        TrainingCheckpoint.Restore(folder, b.Executor, b.Trainer);
        using (no_grad())
            foreach (var state in OptimizerSlot.Of(b.Trainer))
            {
                state.ExpAvg.zero_();
                state.ExpAvgSq.zero_();
                state.SetStep(0);
            }
        var resumed = b.TrainUntil(Total);
        Assert.That(resumed[0], Is.EqualTo(expected[At]), "the first resumed loss only depends on the weights");
        Assert.That(resumed[1], Is.Not.EqualTo(expected[At + 1]), "a fresh optimizer must change the next loss");
    }

    private static void AssertSameState(TinyTraining a, TinyTraining b)
    {
        var pa = a.Model.UniqueNamedParameters();
        var pb = b.Model.UniqueNamedParameters();
        for (int i = 0; i < pa.Count; i++) TensorAssert.Equal(pb[i].Parameter, pa[i].Parameter, pa[i].Name);
        if (a.Trainer.MasterWeights is { } ma)
            for (int i = 0; i < ma.Count; i++) TensorAssert.Equal(b.Trainer.MasterWeights![i], ma[i], $"master {i}");
        var sa = OptimizerSlot.Of(a.Trainer);
        var sb = OptimizerSlot.Of(b.Trainer);
        for (int i = 0; i < sa.Count; i++)
        {
            Assert.That(sb[i].GetStep(), Is.EqualTo(sa[i].GetStep()).And.GreaterThan(0), $"AdamW step of parameter {i}");
            TensorAssert.Equal(sb[i].ExpAvg, sa[i].ExpAvg, $"exp_avg {i}");
            TensorAssert.Equal(sb[i].ExpAvgSq, sa[i].ExpAvgSq, $"exp_avg_sq {i}");
        }
        using var ea = a.Model.MoeTokensPerExpert;
        using var eb = b.Model.MoeTokensPerExpert;
        TensorAssert.Equal(eb, ea, "MoE tokens per expert");
        Assert.That(ea.sum().item<long>(), Is.GreaterThan(0), "the statistics were counted");
    }
}
