using Microsoft.ML.Qwen3Moe.Pipelining;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Pipelining;

/// <summary>d9d's worked examples of <c>distribute_layers_for_pipeline_stage</c>.</summary>
public class LayerDistributionTests
{
    [TestCase(24, 4, 1, 1, new[] { 6, 7, 6, 5 })]
    [TestCase(30, 4, 0, 2, new[] { 8, 8, 8, 6 })]
    [TestCase(10, 1, 1, 2, new[] { 10 })]
    [TestCase(12, 2, 1, 1, new[] { 6, 6 })]
    [TestCase(32, 4, 0, 0, new[] { 8, 8, 8, 8 })]
    [TestCase(34, 4, 0, 0, new[] { 9, 9, 8, 8 })]
    [TestCase(16, 8, 0, 1, new[] { 3, 2, 2, 2, 2, 2, 2, 1 })]
    public void SplitsAsD9dDoes(int layers, int stages, int pre, int post, int[] counts)
    {
        Assert.That(LayerDistribution.LayerCounts(layers, pre, post, stages), Is.EqualTo(counts));
        int start = 0;
        for (int s = 0; s < stages; s++)
        {
            var range = LayerDistribution.DistributeLayersForPipelineStage(layers, pre, post, new PipelineStageInfo(s, stages));
            Assert.That(range, Is.EqualTo((start, start + counts[s])), $"stage {s}");
            start += counts[s];
        }
    }

    [TestCase(0, 4, 1, 1)]
    [TestCase(2, 4, 1, 1)]
    public void TooLongPipelineIsAnError(int layers, int stages, int pre, int post)
    {
        Assert.That(() => LayerDistribution.DistributeLayersForPipelineStage(layers, pre, post, new PipelineStageInfo(0, stages)),
            Throws.ArgumentException.With.Message.Contains("Pipeline too long"));
    }

    [Test]
    public void StageOutsideThePipelineIsAnError()
    {
        Assert.That(() => LayerDistribution.DistributeLayersForPipelineStage(4, 0, 0, new PipelineStageInfo(2, 2)),
            Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
