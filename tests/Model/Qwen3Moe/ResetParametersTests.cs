using Microsoft.ML.Qwen3Moe.Pipelining;
using NUnit.Framework;
using static TorchSharp.torch;
using F = Microsoft.ML.Qwen3Moe.Tests.Model.Execution.PipelineFixtures;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

public class ResetParametersTests
{
    private static Dictionary<string, Tensor> Values(Qwen3MoeForCausalLM m) =>
        m.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter.detach().clone());

    [Test]
    public void EveryParameterGetsTheSeedDistribution()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 2, sparseStep: 2);
        p = p with { Model = p.Model with
            { SplitVocabSize = new Dictionary<string, int> { ["default"] = 500, ["added"] = 20 }, SplitVocabOrder = new[] { "default", "added" } } };
        using var model = new Qwen3MoeForCausalLM(p);
        using (no_grad())
            foreach (var (_, param) in model.UniqueNamedParameters()) param.fill_(float.NaN);
        using (no_grad()) model.forward(new CausalLMBatch { InputIds = ones(1, 3, dtype: ScalarType.Int64) }).Dispose();
        model.ResetParameters(5);
        Assert.That(model.MoeTokensPerExpert.sum().item<long>(), Is.EqualTo(0), "statistics zeroed");
        double Bound(long fanIn) => 1 / Math.Sqrt(fanIn);
        foreach (var (name, param) in model.UniqueNamedParameters())
        {
            Assert.That(param.isfinite().all().item<bool>(), Is.True, $"{name} was reset");
            double max = param.abs().max().item<float>(), std = param.std().item<float>();
            if (name.EndsWith("norm.weight")) Assert.That(param.eq(1).all().item<bool>(), Is.True, $"{name}: ones");
            else if (name.StartsWith("model.embed_tokens.")) Assert.That(std, Is.EqualTo(1.0).Within(0.1), $"{name}: N(0,1)");
            else
            {
                long fanIn = name.EndsWith("experts.down_proj") ? 16 : name.EndsWith("mlp.down_proj.weight") ? 48 : name.EndsWith("o_proj.weight") ? 32 : 32;
                Assert.That(max, Is.LessThanOrEqualTo(Bound(fanIn)), $"{name}: within ±1/√{fanIn}");
                Assert.That(std, Is.EqualTo(Bound(fanIn) / Math.Sqrt(3)).Within(0.25 * Bound(fanIn) / Math.Sqrt(3)), $"{name}: uniform std");
            }
        }
    }

    [Test]
    public void ReproducibleWithASeedAndIndependentOfTheSplit()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(pre: 1, post: 1);
        using var a = new Qwen3MoeForCausalLM(p);
        using var b = new Qwen3MoeForCausalLM(p);
        a.ResetParameters(7);
        b.ResetParameters(7);
        var va = Values(a);
        foreach (var (name, t) in Values(b)) TensorAssert.Equal(t, va[name], name);
        b.ResetParameters(8);
        Assert.That(Values(b).Any(kv => !kv.Value.equal(va[kv.Key]).all().item<bool>()), Is.True, "another seed, other values");
        for (int s = 0; s < 3; s++)
        {
            using var stage = new Qwen3MoeForCausalLM(p, new PipelineStageInfo(s, 3));
            stage.ResetParameters(7);
            foreach (var (name, t) in Values(stage)) TensorAssert.Equal(t, va[name], $"stage {s}: {name}");
        }
        a.Model.ResetParameters(7);
        foreach (var (name, t) in Values(a)) TensorAssert.Equal(t, va[name], $"backbone reset alone: {name}");
    }

    [Test]
    public void GlobalGeneratorWithoutASeed()
    {
        using var scope = NewDisposeScope();
        using var model = new Qwen3MoeForCausalLM(F.Parameters(layers: 2));
        manual_seed(3);
        model.ResetParameters();
        var first = Values(model);
        manual_seed(3);
        model.ResetParameters();
        foreach (var (name, t) in Values(model)) TensorAssert.Equal(t, first[name], name);
    }
}
