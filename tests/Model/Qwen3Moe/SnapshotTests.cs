using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Execution;
using NUnit.Framework;
using static TorchSharp.torch;
using F = Microsoft.ML.Qwen3Moe.Tests.Model.Execution.PipelineFixtures;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

public class SnapshotTests
{
    /// <summary>Masked mean over the sequence of each hidden state, in float32, cast back: the definition, written out.</summary>
    private static Tensor ExpectedSnapshot(IReadOnlyList<Tensor> hiddenStates, Tensor mask)
    {
        var m = mask.to(ScalarType.Float32).unsqueeze(-1);
        return stack(hiddenStates.Select(h => ((h.to(ScalarType.Float32) * m).sum(dim: 1) / m.sum(dim: 1)).to(h.dtype)).ToArray(), 0);
    }

    [Test]
    public void MeanOfOneMaskedToken()
    {
        using var scope = NewDisposeScope();
        var aggregator = HiddenStatesAggregator.Create(HiddenStatesAggregationMode.Mean, tensor(new long[] { 1, 0 }).unsqueeze(0));
        aggregator.Add(tensor(new float[] { 10, 99 }).view(1, 2, 1));
        var packed = aggregator.Pack(null)!;
        Assert.That(packed.shape, Is.EqualTo(new long[] { 1, 1, 1 }));
        Assert.That(packed.item<float>(), Is.EqualTo(10f), "the masked-out 99 is not averaged in");
        Assert.That(aggregator.Pack(null), Is.Null, "packing clears the collected means");
        var previous = ones(2, 1, 1);
        aggregator.Add(tensor(new float[] { 4, 0 }).view(1, 2, 1));
        Assert.That(aggregator.Pack(previous)!.data<float>().ToArray(), Is.EqualTo(new[] { 1f, 1f, 4f }), "earlier entries first");
    }

    [Test]
    public void ModeNoProducesNothingAndMeanNeedsAMask()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 2);
        var batch = F.Batch(2);
        using var plain = F.Whole(p);
        using (var o = plain.forward(new CausalLMBatch { InputIds = batch.InputIds, HiddenStatesAggregationMask = batch.AttentionMask }))
            Assert.That(o.HiddenStatesSnapshot, Is.Null);
        using var mean = F.Whole(p, HiddenStatesAggregationMode.Mean);
        Assert.That(() => mean.forward(new CausalLMBatch { InputIds = batch.InputIds }),
            Throws.ArgumentException.With.Message.Contains("HiddenStatesAggregationMask"));
    }

    [TestCase(ScalarType.Float32)]
    [TestCase(ScalarType.BFloat16)]
    public void MeanSnapshotStacksEmbeddingAndEveryLayerOutput(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 3);
        using var model = new Qwen3MoeForCausalLM(p, dtype: dtype, hiddenStatesSnapshotMode: HiddenStatesAggregationMode.Mean);
        model.InitializeWeights(F.Seed);
        var batch = F.Batch(3);
        using var o = model.forward(new CausalLMBatch
            { InputIds = batch.InputIds, HiddenStatesAggregationMask = batch.AttentionMask, OutputHiddenStates = true });
        Assert.That(o.HiddenStatesSnapshot!.shape, Is.EqualTo(new long[] { 4, 3, 32 }), "[1 + layers, B, H]");
        Assert.That(o.HiddenStatesSnapshot.dtype, Is.EqualTo(dtype));
        TensorAssert.Equal(o.HiddenStatesSnapshot, ExpectedSnapshot(o.AllHiddenStates!, batch.AttentionMask!),
            "masked means of embedding and layer outputs (not the final norm)");
    }

    [Test]
    public void StagesExtendTheSnapshotTheyReceive()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(pre: 1, post: 1);
        var batch = F.Batch(4);
        using var whole = F.Whole(p, HiddenStatesAggregationMode.Mean);
        using var expected = whole.forward(new CausalLMBatch { InputIds = batch.InputIds, HiddenStatesAggregationMask = batch.AttentionMask });
        var stages = F.Stages(p, 3, HiddenStatesAggregationMode.Mean);
        Tensor? hidden = null, snapshot = null;
        var lengths = new List<long>();
        foreach (var stage in stages)
        {
            var o = stage.forward(new CausalLMBatch
            {
                InputIds = stage.Stage.IsFirst ? batch.InputIds : null, HiddenStates = hidden, HiddenStatesSnapshot = snapshot,
                HiddenStatesAggregationMask = batch.AttentionMask,
            });
            (hidden, snapshot) = (o.HiddenStates, o.HiddenStatesSnapshot);
            lengths.Add(snapshot!.shape[0]);
        }
        Assert.That(lengths, Is.EqualTo(new long[] { 3, 6, 8 }), "1 + layers so far after stages owning [0,2), [2,5), [5,7)");
        TensorAssert.Close(snapshot!, expected.HiddenStatesSnapshot!, 1e-6, "split snapshot");
        using var pipeline = new PipelineExecutor(stages, PipelineScheduleKind.GPipe, 2);
        using var piped = pipeline.Forward(new CausalLMBatch { InputIds = batch.InputIds, HiddenStatesAggregationMask = batch.AttentionMask });
        TensorAssert.Close(piped.HiddenStatesSnapshot!, expected.HiddenStatesSnapshot!, 1e-6, "pipelined snapshot (micro-batches joined on dim 1)");
        foreach (var s in stages) s.Dispose();
    }

    [Test]
    public void SnapshotCarriesGradients()
    {
        using var scope = NewDisposeScope();
        using var model = F.Whole(F.Parameters(layers: 2), HiddenStatesAggregationMode.Mean);
        var batch = F.Batch(2);
        using var o = model.forward(new CausalLMBatch { InputIds = batch.InputIds, HiddenStatesAggregationMask = batch.AttentionMask });
        o.HiddenStatesSnapshot!.select(0, 2).sum().backward();
        var q = model.UniqueNamedParameters().Single(x => x.Name == "model.layers.1.self_attn.q_proj.weight").Parameter;
        Assert.That(q.grad is not null && q.grad.abs().sum().item<float>() > 0, Is.True, "a loss on the last layer's mean reaches that layer");
    }

    [Test]
    public void TrainingThroughThePipelineWithSnapshotsMatchesThePlainModel()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(pre: 1);
        var batch = F.Batch(4);
        batch = new CausalLMBatch
            { InputIds = batch.InputIds, AttentionMask = batch.AttentionMask, Labels = batch.Labels, HiddenStatesAggregationMask = batch.AttentionMask };
        using var whole = F.Whole(p);
        new SingleStageExecutor(whole).ForwardBackward(batch, F.Targets(batch), 0);
        var stages = F.Stages(p, 2, HiddenStatesAggregationMode.Mean);
        using var pipeline = new PipelineExecutor(stages, PipelineScheduleKind.OneForwardOneBackward, 2);
        pipeline.ForwardBackward(batch, F.Targets(batch), 0);
        F.AssertSameGradients(stages, whole, 1e-5, "snapshots travel but do not change the loss");
        foreach (var s in stages) s.Dispose();
    }
}
