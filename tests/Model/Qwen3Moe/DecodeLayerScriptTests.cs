using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Lora;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

/// <summary>
/// The scripted decode step (<see cref="KernelOptions.ScriptedDecode"/>) against the module path it replaces, on the
/// golden fixtures (float32, CPU; tiny: all layers sparse, top-2 of 8, renormalised; mixed: a dense layer, top-4 of 16,
/// not renormalised, one K/V head). The same ops in the same order, so the logits agree within 1e-5: the sorted-experts path
/// gave identical bits when this was written, the gathered experts (bmm per pair instead of one matmul per expert group)
/// sum in another order and differed by at most 8.3e-7. Both expert paths are run: gathered weights
/// (<see cref="KernelOptions.DecodeGatherPairs"/> large) and sorted groups (0).
/// </summary>
public class DecodeLayerScriptTests
{
    private const double Tolerance = 1e-5;

    private static readonly KernelOptions Modules = new() { ScriptedDecode = false };

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var fixture in new[] { "tiny", "mixed" })
            foreach (int gather in new[] { 0, 1000 })
                yield return new TestCaseData(fixture, gather).SetArgDisplayNames(fixture, gather == 0 ? "sorted experts" : "gathered experts");
    }

    private static string Folder(string fixture) => Path.Combine(GoldenFixture.BuiltInRoot, fixture, "model");

    private static Qwen3MoeForCausalLM Load(string fixture, KernelOptions kernels)
    {
        var model = new Qwen3MoeForCausalLM(HuggingFaceConfig.Load(Folder(fixture)), kernels: kernels);
        HuggingFaceCheckpoint.LoadWeights(model, Folder(fixture));
        return model;
    }

    [TestCaseSource(nameof(Cases))]
    public void DecodeStepsGiveTheModulePathsLogitsAndRouting(string fixture, int gather)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var scripted = Load(fixture, new KernelOptions { DecodeGatherPairs = gather });
        using var modules = Load(fixture, Modules);
        manual_seed(11);
        long b = 3, prefill = 7, steps = 9, vocab = scripted.Parameters.Model.VocabSize;
        var ids = randint(0, vocab, new long[] { b, prefill + steps });
        using var scriptedCache = new KvCache(scripted, (int)b, (int)(prefill + steps));
        using var moduleCache = new KvCache(modules, (int)b, (int)(prefill + steps));
        for (long p = 0; p < prefill + steps; p = p == 0 ? prefill : p + 1)
        {
            long s = p == 0 ? prefill : 1;
            var batch = new CausalLMBatch { InputIds = ids.narrow(1, p, s), PositionIds = arange(p, p + s, dtype: ScalarType.Int64).expand(b, s) };
            var actual = scripted.Model.Forward(batch, scriptedCache);
            var expected = modules.Model.Forward(batch, moduleCache);
            TensorAssert.Close(scripted.lm_head!.forward(actual.HiddenStates), modules.lm_head!.forward(expected.HiddenStates), Tolerance,
                $"logits at position {p}");
            Assert.That(actual.RouterLogits, Has.Count.EqualTo(expected.RouterLogits.Count), "router logits of every sparse layer");
            for (int j = 0; j < actual.RouterLogits.Count; j++)
                TensorAssert.Close(actual.RouterLogits[j], expected.RouterLogits[j], Tolerance, $"router logits {j} at position {p}");
        }
        Assert.That(scriptedCache.Length, Is.EqualTo(prefill + steps));
    }

    [TestCaseSource(nameof(Cases))]
    public void ARaggedBatchGeneratesAsTheModulePath(string fixture, int gather)
    {
        using var scope = NewDisposeScope();
        using var scripted = Load(fixture, new KernelOptions { DecodeGatherPairs = gather });
        using var modules = Load(fixture, Modules);
        var prompts = new IReadOnlyList<int>[] { new[] { 5, 17, 200, 33, 91, 7, 64, 12 }, new[] { 9, 8 }, new[] { 300, 1, 2, 3, 140 } };
        var options = new GenerationOptions { MaxNewTokens = 10 };
        var (scriptedTokens, scriptedLogits) = Generate(scripted, prompts, options);
        var (moduleTokens, moduleLogits) = Generate(modules, prompts, options);
        Assert.That(scriptedTokens, Is.EqualTo(moduleTokens), "greedy tokens");
        Assert.That(scriptedLogits, Has.Count.EqualTo(moduleLogits.Count));
        for (int s = 0; s < scriptedLogits.Count; s++) TensorAssert.Close(scriptedLogits[s], moduleLogits[s], Tolerance, $"step {s} logits");
        using var counts = scripted.Model.MoeTokensPerExpert;
        Assert.That(counts.count_nonzero().item<long>(), Is.Zero, "generation counts no MoE statistics (as the module path)");
    }

    [Test]
    public void LayersWithActiveLoraAdaptersKeepTheModulePath()
    {
        using var scope = NewDisposeScope();
        var lora = new LoraOptions { Rank = 2, Alpha = 4, Targets = LoraTargets.Attention | LoraTargets.Experts | LoraTargets.DenseMlp, Seed = 3 };
        using var scripted = Load("mixed", KernelOptions.Default);
        using var modules = Load("mixed", Modules);
        var adapters = new[] { LoraAdapters.Attach(scripted, lora), LoraAdapters.Attach(modules, lora) };
        using (no_grad())
        using (var factor = Scalars.Of(0.2))
            foreach (var set in adapters)
            {
                // B starts at zero (the adapted model equals the base): give every factor values, the same in both models
                manual_seed(5);
                foreach (var (_, p) in set.Stage.named_parameters().Where(np => set.IsAdapterParameter(np.name)))
                    p.copy_(randn_like(p).mul_(factor));
            }
        Assert.That(Enumerable.Range(0, 4).All(adapters[0].AdaptsLayer), Is.True);
        var prompts = new IReadOnlyList<int>[] { new[] { 5, 17, 200, 33 }, new[] { 9, 8, 7 } };
        var options = new GenerationOptions { MaxNewTokens = 6 };
        var (tokens, logits) = Generate(scripted, prompts, options);
        var (expectedTokens, expectedLogits) = Generate(modules, prompts, options);
        Assert.That(tokens, Is.EqualTo(expectedTokens));
        for (int s = 0; s < logits.Count; s++) TensorAssert.Close(logits[s], expectedLogits[s], Tolerance, $"step {s} logits with adapters");

        // merged into the base weights, the adapters add nothing and the scripted step runs (on the merged weights)
        adapters[0].MergeIntoBase();
        adapters[1].MergeIntoBase();
        Assert.That(adapters[0].AdaptsLayer(0), Is.False);
        var (mergedTokens, mergedLogits) = Generate(scripted, prompts, options);
        var (expectedMerged, expectedMergedLogits) = Generate(modules, prompts, options);
        Assert.That(mergedTokens, Is.EqualTo(expectedMerged));
        for (int s = 0; s < mergedLogits.Count; s++)
            TensorAssert.Close(mergedLogits[s], expectedMergedLogits[s], Tolerance, $"step {s} logits, merged");
    }

    private static (int[][] Tokens, List<Tensor> Logits) Generate(Qwen3MoeForCausalLM model, IReadOnlyList<IReadOnlyList<int>> prompts,
        GenerationOptions options)
    {
        var generator = new CausalLMGenerator(new[] { model });
        var logits = new List<Tensor>();
        generator.OnLogits = l => logits.Add(l.clone().DetachFromDisposeScope());
        var results = generator.Generate(prompts, options);
        return (results.Select(r => r.TokenIds.ToArray()).ToArray(), logits);
    }
}
