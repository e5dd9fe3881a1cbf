using Microsoft.ML.Qwen3Moe.Execution;
using NUnit.Framework;
using static TorchSharp.torch;
using F = Microsoft.ML.Qwen3Moe.Tests.Model.Execution.PipelineFixtures;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

public class TokensPerExpertTests
{
    private const int TopK = 2, Experts = 4;

    [Test]
    public void CountsEveryTopKChoiceOnModelBackboneAndLayer()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 4, sparseStep: 2);                     // sparse layers 1 and 3
        using var model = F.Whole(p);
        var ids = randint(0, 50, new long[] { 3, 5 }, dtype: ScalarType.Int64);
        using (no_grad()) model.forward(new CausalLMBatch { InputIds = ids }).Dispose();
        var counts = model.MoeTokensPerExpert;
        Assert.That(counts.shape, Is.EqualTo(new long[] { 2, Experts }));
        Assert.That(counts.dtype, Is.EqualTo(ScalarType.Int64));
        TensorAssert.Equal(counts.sum(dim: 1), full(2, 3L * 5 * TopK, dtype: ScalarType.Int64), "k choices per token and layer");
        TensorAssert.Equal(model.Model.MoeTokensPerExpert, counts, "backbone");
        TensorAssert.Equal(model.Model.LayerMoeTokensPerExpert(1), counts[0], "layer 1");
        TensorAssert.Equal(model.Model.LayerMoeTokensPerExpert(3), counts[1], "layer 3");
        Assert.That(() => model.Model.LayerMoeTokensPerExpert(0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("dense"));
        Assert.That(() => model.Model.LayerMoeTokensPerExpert(4), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("not on this stage"));

        using (no_grad()) model.forward(new CausalLMBatch { InputIds = ids }).Dispose();
        TensorAssert.Equal(model.MoeTokensPerExpert, counts * 2, "counts accumulate until reset");
        model.ResetMoeStats();
        TensorAssert.Equal(model.MoeTokensPerExpert, zeros(2, Experts, dtype: ScalarType.Int64), "reset");
    }

    [Test]
    public void PaddingIsNotCounted()
    {
        using var scope = NewDisposeScope();
        using var model = F.Whole(F.Parameters(layers: 2));
        var batch = F.Batch(4, seq: 6);                                      // rows 1 and 3 have 2 padding tokens
        using (no_grad()) model.forward(new CausalLMBatch { InputIds = batch.InputIds, AttentionMask = batch.AttentionMask }).Dispose();
        TensorAssert.Equal(model.MoeTokensPerExpert.sum(dim: 1), full(2, (4L * 6 - 2 * 2) * TopK, dtype: ScalarType.Int64), "real tokens only");
    }

    [Test]
    public void CheckpointRecomputationIsNotCountedTwice()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 3);
        var batch = F.Batch(2);
        using var plain = F.Whole(p);
        using var checkpointed = F.Whole(p);
        checkpointed.EnableCheckpointing = true;
        foreach (var m in new[] { plain, checkpointed }) new SingleStageExecutor(m).ForwardBackward(batch, F.Targets(batch), 0.1);
        Assert.That(checkpointed.UniqueNamedParameters().All(x => x.Parameter.grad is not null), Is.True, "the backward pass (and its recomputation) ran");
        TensorAssert.Equal(checkpointed.MoeTokensPerExpert, plain.MoeTokensPerExpert, "same counts");
        TensorAssert.Equal(plain.MoeTokensPerExpert.sum(dim: 1), full(3, (2L * 6 - 2) * TopK, dtype: ScalarType.Int64), "one count per real token and choice");
    }

    [Test]
    public void PipelineStagesCountTheirOwnLayers()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(pre: 1, post: 1);
        var batch = F.Batch(4);
        using var whole = F.Whole(p);
        new SingleStageExecutor(whole).ForwardBackward(batch, F.Targets(batch), 0);
        var stages = F.Stages(p, 3);
        using var pipeline = new PipelineExecutor(stages, PipelineScheduleKind.OneForwardOneBackward, 4);
        pipeline.ForwardBackward(batch, F.Targets(batch), 0);
        Assert.That(stages.Select(s => s.MoeTokensPerExpert.shape[0]), Is.EqualTo(new long[] { 2, 3, 2 }), "local layers per stage");
        TensorAssert.Equal(cat(stages.Select(s => s.MoeTokensPerExpert).ToArray(), 0), whole.MoeTokensPerExpert,
            "stages together count what the whole model counts");
        foreach (var s in stages) s.Dispose();
    }
}
