using Microsoft.ML.Qwen3Moe.Execution;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

/// <summary>
/// Pipelining options reach the pipeline executor: 2 stages and 2 micro-batches on the CPU train to the losses of the
/// unpipelined run (same data, same seed; per-parameter seeded init makes the weights identical for any split).
/// Needs the pipeline executor; until it is in the build, the pipelined fit throws NotSupportedException and this fails.
/// </summary>
[TestFixture]
public class PipelinedEstimatorTests
{
    [TestCase(PipelineScheduleKind.GPipe)]
    [TestCase(PipelineScheduleKind.OneForwardOneBackward)]
    public void TwoStagesTwoMicroBatchesTrainLikeOneStage(PipelineScheduleKind schedule)
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, TestModels.Corpus);

        var single = TestModels.TextOptions(maxSteps: 4);
        single.NewModel = TestModels.TinyTextParameters(layers: 4, tiedEmbeddings: false);
        single.BatchSize = 4;
        single.IncludeAuxiliaryLoss = false; // the load-balancing loss is per (micro-)batch by definition
        using var reference = ml.Qwen3Moe().FineTune(single).Fit(data);

        var pipelined = TestModels.TextOptions(maxSteps: 4);
        pipelined.NewModel = TestModels.TinyTextParameters(layers: 4, tiedEmbeddings: false);
        pipelined.BatchSize = 4;
        pipelined.IncludeAuxiliaryLoss = false;
        pipelined.NumberOfStages = 2;
        pipelined.MicroBatches = 2;
        pipelined.PipelineSchedule = schedule;
        pipelined.StageDevices = new[] { "cpu", "cpu" };
        using var model = ml.Qwen3Moe().FineTune(pipelined).Fit(data);

        var expected = reference.TrainingHistory.Select(s => s.Loss).ToArray();
        var actual = model.TrainingHistory.Select(s => s.Loss).ToArray();
        Assert.That(actual, Has.Length.EqualTo(expected.Length));
        for (int i = 0; i < expected.Length; i++)
            TensorAssert.RelativelyClose(actual[i], expected[i], 1e-5, $"loss of step {i}");
        var probe = TestModels.Texts(ml, "The cat sat on the mat.");
        Assert.That(TestModels.Floats(model.Transform(probe), "Perplexity")[0],
            Is.EqualTo(TestModels.Floats(reference.Transform(probe), "Perplexity")[0]).Within(1e-4).Percent, "the pipelined model scores like the reference");
    }
}
