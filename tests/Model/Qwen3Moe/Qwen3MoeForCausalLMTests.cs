using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

public class Qwen3MoeForCausalLMTests
{
    internal static Qwen3MoeForCausalLMParameters
        TinyParameters(Func<Qwen3MoeLayerParameters, Qwen3MoeLayerParameters>? layer = null, int layers = 2, int sparseStep = 1)
    {
        var l = new Qwen3MoeLayerParameters
        {
            HiddenSize = 32, MoeIntermediateSize = 16, IntermediateSize = 48, NumExperts = 4, ExpertsTopK = 2,
            NumAttentionHeads = 4, NumKeyValueHeads = 2, RmsNormEps = 1e-6, HeadDim = 8,
        };
        return new Qwen3MoeForCausalLMParameters
        {
            Model = new Qwen3MoeParameters
            {
                Layer = layer?.Invoke(l) ?? l, NumHiddenLayers = layers, RopeBase = 10000, MaxPositionIds = 64,
                SplitVocabSize = new Dictionary<string, int> { ["default"] = 50 }, SplitVocabOrder = new[] { "default" },
                DecoderSparseStep = sparseStep,
            },
        };
    }

    [Test]
    public void RightPaddedBatchMatchesUnpaddedSequences()
    {
        using var scope = NewDisposeScope();
        using var model = HuggingFaceCheckpoint.Load(GoldenFixture.Tiny.ModelFolder);
        model.eval();
        using var _ = no_grad();
        var ids = GoldenFixture.Tiny.Expected("input_ids");
        var lengths = new long[] { 24, 15 };
        var mask = stack(lengths.Select(n => arange(24).lt(n).to(ScalarType.Int64)).ToArray());
        var padded = ids.masked_fill(mask.eq(0), 0);
        model.ResetMoeStats();
        using var batch = model.forward(new CausalLMBatch { InputIds = padded, AttentionMask = mask, ReturnLogits = true });
        var maskedCounts = model.MoeTokensPerExpert.clone();
        model.ResetMoeStats();
        // declared right padding: attention skips the mask (flash path) and gives the same outputs and statistics
        using var flagged = model.forward(new CausalLMBatch { InputIds = padded, AttentionMask = mask, RightPadded = true, ReturnLogits = true });
        for (int b = 0; b < 2; b++)
            TensorAssert.Close(flagged.Logits![b].narrow(0, 0, lengths[b]), batch.Logits![b].narrow(0, 0, lengths[b]), 1e-5,
                $"RightPadded logits, row {b} real positions");
        TensorAssert.Equal(model.MoeTokensPerExpert, maskedCounts, "RightPadded MoE statistics");
        var paddedCounts = model.MoeTokensPerExpert.clone();
        model.ResetMoeStats();
        for (int b = 0; b < 2; b++)
        {
            var alone = ids[b].narrow(0, 0, lengths[b]).unsqueeze(0);
            using var o = model.forward(new CausalLMBatch { InputIds = alone, ReturnLogits = true });
            TensorAssert.Close(batch.Logits![b].narrow(0, 0, lengths[b]), o.Logits![0], 1e-5, $"row {b} logits at real positions");
        }
        TensorAssert.Equal(paddedCounts, model.MoeTokensPerExpert, "padding is not counted in the MoE statistics");
        Assert.That(paddedCounts.sum().item<long>(), Is.EqualTo((24 + 15) * 2 * 3), "k=2 choices per real token, 3 layers");
    }

    [Test]
    public void LeftPaddingIsMaskedOutOfAttention()
    {
        using var scope = NewDisposeScope();
        using var model = HuggingFaceCheckpoint.Load(GoldenFixture.Tiny.ModelFolder);
        using var _ = no_grad();
        var ids = GoldenFixture.Tiny.Expected("input_ids")[0].narrow(0, 0, 10).unsqueeze(0);
        var padded = cat(new[] { zeros(1, 4, dtype: ScalarType.Int64), ids }, 1);
        var mask = cat(new[] { zeros(1, 4, dtype: ScalarType.Int64), ones(1, 10, dtype: ScalarType.Int64) }, 1);
        var positions = (mask.cumsum(1) - 1).clamp_min(0);
        using var left = model.forward(new CausalLMBatch { InputIds = padded, AttentionMask = mask, PositionIds = positions, ReturnLogits = true });
        using var alone = model.forward(new CausalLMBatch { InputIds = ids, ReturnLogits = true });
        TensorAssert.Close(left.Logits!.narrow(1, 4, 10), alone.Logits!, 1e-5, "left-padded logits at real positions");
    }

    [Test]
    public void SeededInitialisationIsReproducible()
    {
        using var scope = NewDisposeScope();
        var p = TinyParameters();
        using var a = new Qwen3MoeForCausalLM(p);
        using var b = new Qwen3MoeForCausalLM(p);
        using var c = new Qwen3MoeForCausalLM(p);
        a.InitializeWeights(7);
        b.InitializeWeights(7);
        c.InitializeWeights(8);
        var pa = a.UniqueNamedParameters();
        var pb = b.UniqueNamedParameters();
        var pc = c.UniqueNamedParameters();
        for (int i = 0; i < pa.Count; i++) TensorAssert.Equal(pa[i].Parameter, pb[i].Parameter, pa[i].Name);
        Assert.That(pa.Zip(pc).Any(x => !x.First.Parameter.equal(x.Second.Parameter).all().item<bool>()), Is.True, "a different seed changes the weights");
        var std = a.Model.Layers.First().self_attn.q_proj.weight!.std().item<float>();
        Assert.That(std, Is.EqualTo(0.02).Within(0.004), "HF's normal(0, initializer_range)");
    }

    [Test]
    public void SeededInitialisationDoesNotDependOnThePipelineSplit()
    {
        using var scope = NewDisposeScope();
        var p = TinyParameters(layers: 3);
        using var whole = new Qwen3MoeForCausalLM(p);
        whole.InitializeWeights(42);
        var all = whole.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
        for (int s = 0; s < 2; s++)
        {
            using var stage = new Qwen3MoeForCausalLM(p, new Microsoft.ML.Qwen3Moe.Pipelining.PipelineStageInfo(s, 2));
            stage.InitializeWeights(42);
            foreach (var (name, param) in stage.UniqueNamedParameters()) TensorAssert.Equal(param, all[name], name);
        }
    }

    [Test]
    public void PublishedQwen3_30B_A3B_SizesFromShapesAlone()
    {
        var p = HuggingFaceConfig.Load(Path.Combine(GoldenFixture.BuiltInRoot, "Qwen3-30B-A3B.config.json"));
        var count = ParameterCount.Of(p);
        Assert.That(count.Total / 1e9, Is.EqualTo(30.5).Within(0.1), "about 30.5B parameters");
        Assert.That(count.ActivePerToken / 1e9, Is.EqualTo(3.3).Within(0.1), "about 3.3B active per token");
    }

    [TestCase("tiny")]
    [TestCase("mixed")]
    public void ShapeCountMatchesTheBuiltModel(string fixture)
    {
        var p = HuggingFaceConfig.Load(Path.Combine(GoldenFixture.BuiltInRoot, fixture, "model"));
        using var model = new Qwen3MoeForCausalLM(p);
        Assert.That(ParameterCount.Of(p).Total, Is.EqualTo(model.UniqueNamedParameters().Sum(x => x.Parameter.numel())));
    }

    [TestCase(1, false, 1)]
    [TestCase(4, true, 2)]
    [TestCase(2, false, 2)]
    public void VariantsRunForwardAndBackward(int kvHeads, bool attentionBias, int sparseStep)
    {
        using var scope = NewDisposeScope();
        var p = TinyParameters(l =>
            l with { NumKeyValueHeads = kvHeads, AttentionBias = attentionBias, NormalizeTopKProbabilities = !attentionBias, HeadDim = 12 }, layers: 2,
            sparseStep: sparseStep);
        using var model = new Qwen3MoeForCausalLM(p);
        model.InitializeWeights(1);
        var ids = randint(0, 50, new long[] { 2, 9 }, dtype: ScalarType.Int64);
        var labels = CausalLMLoss.ShiftLabels(ids);
        using var o = model.forward(new CausalLMBatch { InputIds = ids, Labels = labels });
        var loss = CausalLMLoss.Mean(o.TokenNll!, labels) + p.RouterAuxLossCoefficient * CausalLMLoss.AuxiliaryLoss(o.RouterLogits, 2);
        loss.backward();
        Assert.That(o.RouterLogits, Has.Count.EqualTo(sparseStep == 1 ? 2 : 1));
        Assert.That(model.UniqueNamedParameters().All(x => x.Parameter.grad is not null && x.Parameter.grad.isfinite().all().item<bool>()), Is.True,
            "every parameter gets a finite gradient");
        Assert.That(model.UniqueNamedParameters().Count(x => x.Name.EndsWith("q_proj.bias")), Is.EqualTo(attentionBias ? 2 : 0));
    }

    [Test]
    public void Bfloat16TrainsForwardAndBackward()
    {
        using var scope = NewDisposeScope();
        using var model = new Qwen3MoeForCausalLM(TinyParameters(), dtype: ScalarType.BFloat16);
        model.InitializeWeights(3);
        var ids = randint(0, 50, new long[] { 2, 8 }, dtype: ScalarType.Int64);
        var labels = CausalLMLoss.ShiftLabels(ids);
        using var o = model.forward(new CausalLMBatch { InputIds = ids, Labels = labels });
        Assert.That(o.HiddenStates.dtype, Is.EqualTo(ScalarType.BFloat16));
        var loss = CausalLMLoss.Mean(o.TokenNll!, labels);
        Assert.That(loss.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(loss.item<float>(), Is.EqualTo(Math.Log(50)).Within(0.3), "near-uniform predictions at init");
        loss.backward();
        Assert.That(model.UniqueNamedParameters().All(x => x.Parameter.grad!.dtype == ScalarType.BFloat16), Is.True);
    }

    [Test]
    public void OutOfRangeTokenIdIsAnErrorWhereTheBatchEntersAnExecutor()
    {
        using var model = new Qwen3MoeForCausalLM(TinyParameters());
        using var executor = new SingleStageExecutor(model);
        using var ids = tensor(new long[] { 1, 2, 50 }).unsqueeze(0);
        using var labels = tensor(new long[] { 2, 3, -100 }).unsqueeze(0);
        Assert.That(() => executor.Score(new CausalLMBatch { InputIds = ids, Labels = labels }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Token id 50 is outside the vocabulary [0, 50)"));
    }

    [Test]
    public void SequenceLongerThanMaxPositionsIsAnError()
    {
        using var model = new Qwen3MoeForCausalLM(TinyParameters());
        using var ids = zeros(1, 65, dtype: ScalarType.Int64);
        Assert.That(() => model.forward(new CausalLMBatch { InputIds = ids }),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("max_position_embeddings"));
    }
}
