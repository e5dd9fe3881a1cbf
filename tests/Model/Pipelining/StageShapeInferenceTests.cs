using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Pipelining;
using NUnit.Framework;
using static TorchSharp.torch;
using F = Microsoft.ML.Qwen3Moe.Tests.Model.Execution.PipelineFixtures;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Pipelining;

public class StageShapeInferenceTests
{
    private static string Describe(IReadOnlyDictionary<string, StageTensorSpec> specs) =>
        string.Join("; ", specs.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}"));

    [Test]
    public void InputsAndOutputsPerStageAsTheSeed()
    {
        // 7 layers, virtual pre 1 / post 1 over 3 stages: layers [0,2), [2,5), [5,7).
        var p = F.Parameters(pre: 1, post: 1);
        var stages = Enumerable.Range(0, 3)
            .Select(i => new Qwen3MoeForCausalLM(p, new PipelineStageInfo(i, 3), hiddenStatesSnapshotMode: HiddenStatesAggregationMode.Mean,
                dtype: ScalarType.BFloat16))
            .ToArray();
        var shape = new long[] { 8, 5 };
        Assert.That(Describe(stages[0].InferStageInputs(shape, 4)), Is.EqualTo("input_ids [2, 5] Int64"));
        Assert.That(Describe(stages[0].InferStageOutputs(shape, 4)),
            Is.EqualTo("hidden_states [2, 5, 32] BFloat16; hidden_states_snapshot [3, 2, 32] BFloat16"));
        Assert.That(Describe(stages[1].InferStageInputs(shape, 4)),
            Is.EqualTo("hidden_states [2, 5, 32] BFloat16; hidden_states_snapshot [3, 2, 32] BFloat16"));
        Assert.That(Describe(stages[1].InferStageOutputs(shape, 4)),
            Is.EqualTo("hidden_states [2, 5, 32] BFloat16; hidden_states_snapshot [6, 2, 32] BFloat16"));
        Assert.That(Describe(stages[2].InferStageInputs(shape, 4)),
            Is.EqualTo("hidden_states [2, 5, 32] BFloat16; hidden_states_snapshot [6, 2, 32] BFloat16"));
        Assert.That(Describe(stages[2].InferStageOutputs(shape, 4)),
            Is.EqualTo("hidden_states [2, 5, 32] BFloat16; hidden_states_snapshot [8, 2, 32] BFloat16; logps [2, 5] Float32"));
        foreach (var s in stages) s.Dispose();
    }

    [Test]
    public void WithoutSnapshotsOnlyHiddenStatesTravel()
    {
        var p = F.Parameters();
        using var last = new Qwen3MoeForCausalLM(p, new PipelineStageInfo(1, 2));
        Assert.That(Describe(last.InferStageInputs(new long[] { 6, 7 }, 3)), Is.EqualTo("hidden_states [2, 7, 32] Float32"));
        Assert.That(Describe(last.InferStageOutputs(new long[] { 6, 7 }, 3)), Is.EqualTo("hidden_states [2, 7, 32] Float32; logps [2, 7] Float32"));
        Assert.That(() => last.InferStageInputs(new long[] { 5, 7 }, 3), Throws.ArgumentException);
    }

    /// <summary>The inferred outputs are what the stages really produce.</summary>
    [Test]
    public void InferredOutputsMatchARealForward()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(pre: 1);
        var stages = F.Stages(p, 2, HiddenStatesAggregationMode.Mean);
        var batch = F.Batch(4);
        var mask = batch.AttentionMask!;
        var o0 = stages[0].forward(new CausalLMBatch { InputIds = batch.InputIds!.narrow(0, 0, 2), HiddenStatesAggregationMask = mask.narrow(0, 0, 2) });
        var spec0 = stages[0].InferStageOutputs(batch.InputIds!.shape, 2);
        Assert.That(spec0[StageTensorNames.HiddenStates].Matches(o0.HiddenStates)
            && spec0[StageTensorNames.HiddenStatesSnapshot].Matches(o0.HiddenStatesSnapshot!), Is.True);
        var o1 = stages[1].forward(new CausalLMBatch
            { HiddenStates = o0.HiddenStates, HiddenStatesSnapshot = o0.HiddenStatesSnapshot, HiddenStatesAggregationMask = mask.narrow(0, 0, 2),
            Labels = batch.Labels!.narrow(0, 0, 2) });
        var spec1 = stages[1].InferStageOutputs(batch.InputIds!.shape, 2);
        Assert.That(spec1[StageTensorNames.HiddenStatesSnapshot].Matches(o1.HiddenStatesSnapshot!) && spec1[StageTensorNames.TokenNll].Matches(o1.TokenNll!),
            Is.True);
        foreach (var s in stages) s.Dispose();
    }
}
