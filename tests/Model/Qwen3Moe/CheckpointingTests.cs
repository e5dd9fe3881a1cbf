using Microsoft.ML.Qwen3Moe.Execution;
using NUnit.Framework;
using static TorchSharp.torch;
using F = Microsoft.ML.Qwen3Moe.Tests.Model.Execution.PipelineFixtures;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

public class CheckpointingTests
{
    private static StepSums Step(Qwen3MoeForCausalLM model, CausalLMBatch batch, double aux) =>
        new SingleStageExecutor(model).ForwardBackward(batch, F.Targets(batch), aux);

    [TestCase(1, false)]
    [TestCase(2, false)]
    [TestCase(1, true)]
    public void SameLossAndGradientsAsWithout(int sparseStep, bool rightPadded)
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 4, sparseStep: sparseStep);
        // right padded: no attention mask reaches the layers (a null context tensor is saved and restored)
        var batch = F.Batch(3, seq: 7) with { RightPadded = rightPadded };
        using var plain = F.Whole(p);
        using var checkpointed = F.Whole(p);
        checkpointed.EnableCheckpointing = true;
        var expected = Step(plain, batch, 0.5);
        var actual = Step(checkpointed, batch, 0.5);
        TensorAssert.RelativelyClose(actual.NllSum.item<float>(), expected.NllSum.item<float>(), 1e-6, "Σ NLL");
        TensorAssert.RelativelyClose(actual.AuxLoss.item<float>(), expected.AuxLoss.item<float>(), 1e-6, "aux");
        F.AssertSameGradients(new[] { checkpointed }, plain, 1e-6, "checkpointed");
    }

    /// <summary>With frozen embeddings the first layer's input needs no gradient; the layer's own weights still get theirs.</summary>
    [Test]
    public void LayersTrainBehindFrozenEmbeddings()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 2);
        var batch = F.Batch(2);
        using var plain = F.Whole(p);
        using var checkpointed = new Qwen3MoeForCausalLM(p, enableCheckpointing: true);
        checkpointed.InitializeWeights(F.Seed);
        foreach (var m in new[] { plain, checkpointed })
            foreach (var (name, param) in m.UniqueNamedParameters().Where(x => x.Name.StartsWith("model.embed_tokens.")))
                param.requires_grad = false;
        Step(plain, batch, 0);
        Step(checkpointed, batch, 0);
        F.AssertSameGradients(new[] { checkpointed }, plain, 1e-6, "frozen embeddings");
        Assert.That(checkpointed.UniqueNamedParameters().Single(x => x.Name == "model.layers.0.self_attn.q_proj.weight").Parameter.grad, Is.Not.Null);
    }

    [Test]
    public void CheckpointedStagesInThePipelineMatchThePlainModel()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(pre: 1, post: 1);
        var batch = F.Batch(4);
        using var plain = F.Whole(p);
        Step(plain, batch, 0);
        var stages = F.Stages(p, 3);
        foreach (var s in stages) s.EnableCheckpointing = true;
        using var pipeline = new PipelineExecutor(stages, PipelineScheduleKind.OneForwardOneBackward, 2);
        pipeline.ForwardBackward(batch, F.Targets(batch), 0);
        F.AssertSameGradients(stages, plain, 1e-5, "checkpointed pipeline");
        foreach (var s in stages) s.Dispose();
    }

    /// <summary>
    /// Eight layers, 768 tokens: without checkpointing every layer keeps its attention and MoE activations for the
    /// backward pass; with it, a layer keeps only its input and one layer's activations exist at a time (during its
    /// recomputation). Peak resident growth is measured (see <see cref="PeakMemory"/>); the margin is large (2x).
    /// </summary>
    [Test]
    public void LowersPeakActivationMemoryOnADeepModel()
    {
        using var scope = NewDisposeScope();
        var p = Qwen3MoeForCausalLMTests.TinyParameters(l => l with { HiddenSize = 64, MoeIntermediateSize = 64, HeadDim = 16 }, layers: 8);
        p = p with { Model = p.Model with { MaxPositionIds = 512 } };
        var batch = F.Batch(2, seq: 384);
        using var model = F.Whole(p);
        long Peak(bool checkpointing) => PeakMemory.Measure(() =>
        {
            using var inner = NewDisposeScope();
            model.EnableCheckpointing = checkpointing;
            Step(model, batch, 0);
            model.zero_grad();
        });
        Peak(checkpointing: false); // warm-up: gradient buffers, lazy initialisation
        long with = Peak(checkpointing: true), without = Peak(checkpointing: false);
        TestContext.Out.WriteLine($"peak growth of a training step: {without / 1e6:F1} MB without checkpointing, {with / 1e6:F1} MB with");
        Assert.That(with, Is.LessThan(without / 2), "checkpointing at least halves the peak activation memory here");
    }

    [Test]
    public void HasNoEffectWithoutAutograd()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 2);
        var batch = F.Batch(2);
        using var model = F.Whole(p);
        var expected = new SingleStageExecutor(model).Score(batch);
        model.EnableCheckpointing = true;
        TensorAssert.Equal(new SingleStageExecutor(model).Score(batch), expected, "scores");
    }
}
