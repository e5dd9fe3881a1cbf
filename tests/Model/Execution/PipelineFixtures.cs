using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Pipelining;
using Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Execution;

/// <summary>Tiny models split into stages with the weights of the whole model, and padded batches.</summary>
internal static class PipelineFixtures
{
    public const int Seed = 17;

    public static Qwen3MoeForCausalLMParameters Parameters(int layers = 7, int pre = 0, int post = 0, int sparseStep = 1, double auxCoefficient = 0.001)
    {
        var p = Qwen3MoeForCausalLMTests.TinyParameters(layers: layers, sparseStep: sparseStep);
        return p with { RouterAuxLossCoefficient = auxCoefficient,
            Model = p.Model with { PipelineNumVirtualLayersPre = pre, PipelineNumVirtualLayersPost = post } };
    }

    public static Qwen3MoeForCausalLM Whole(Qwen3MoeForCausalLMParameters p, HiddenStatesAggregationMode mode = HiddenStatesAggregationMode.No)
    {
        var m = new Qwen3MoeForCausalLM(p, hiddenStatesSnapshotMode: mode);
        m.InitializeWeights(Seed);
        return m;
    }

    public static Qwen3MoeForCausalLM[] Stages(Qwen3MoeForCausalLMParameters p, int n, HiddenStatesAggregationMode mode = HiddenStatesAggregationMode.No)
    {
        return Enumerable.Range(0, n).Select(i =>
        {
            var m = new Qwen3MoeForCausalLM(p, new PipelineStageInfo(i, n), hiddenStatesSnapshotMode: mode);
            m.InitializeWeights(Seed);
            return m;
        }).ToArray();
    }

    /// <summary>[rows, seq] random ids, every odd row right-padded by 2 (mask 0, label -100), labels shifted.</summary>
    public static CausalLMBatch Batch(long rows, long seq = 6, long seed = 3)
    {
        manual_seed(seed);
        var ids = randint(0, 50, new[] { rows, seq }, dtype: ScalarType.Int64);
        var mask = ones(rows, seq, dtype: ScalarType.Int64);
        for (long r = 1; r < rows; r += 2) mask[r, TensorIndex.Slice(seq - 2)] = tensor(0L);
        return new CausalLMBatch { InputIds = ids, AttentionMask = mask, Labels = CausalLMLoss.ShiftLabels(ids, mask) };
    }

    public static long Targets(CausalLMBatch b) => b.Labels!.ne(CausalLMLoss.IgnoreIndex).sum().item<long>();

    /// <summary>Rows [start, start+count) of a batch.</summary>
    public static CausalLMBatch Rows(CausalLMBatch b, long start, long count) => new()
    {
        InputIds = b.InputIds!.narrow(0, start, count),
        AttentionMask = b.AttentionMask?.narrow(0, start, count),
        Labels = b.Labels?.narrow(0, start, count),
        HiddenStatesAggregationMask = b.HiddenStatesAggregationMask?.narrow(0, start, count),
    };

    /// <summary>Every stage parameter's gradient equals the whole model's gradient of the same name.</summary>
    public static void AssertSameGradients(IEnumerable<Qwen3MoeForCausalLM> stages, Qwen3MoeForCausalLM whole, double rel, string what)
    {
        var expected = whole.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
        int count = 0;
        foreach (var stage in stages)
            foreach (var (name, p) in stage.UniqueNamedParameters())
            {
                var e = expected[name].grad;
                Assert.That(p.grad is null, Is.EqualTo(e is null), $"{what}: {name} has a gradient on one side only");
                if (e is not null) TensorAssert.RelativeToMax(p.grad!, e, rel, $"{what}: grad of {name}");
                count++;
            }
        Assert.That(count, Is.EqualTo(expected.Count), $"{what}: the stages together own every parameter once");
    }
}
