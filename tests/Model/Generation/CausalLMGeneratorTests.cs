using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Generation;

/// <summary>Stopping, seeded sampling and input checks of <see cref="CausalLMGenerator"/> on the tiny fixture (CPU).</summary>
public class CausalLMGeneratorTests
{
    private static readonly IReadOnlyList<int>[] Prompt = { new[] { 5, 17, 200, 33, 91, 7 } };
    private Qwen3MoeForCausalLM _model = null!;
    private CausalLMGenerator _generator = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _model = HuggingFaceCheckpoint.Load(GoldenFixture.Tiny.ModelFolder);
        _generator = new CausalLMGenerator(new[] { _model });
    }

    [OneTimeTearDown]
    public void Unload() => _model.Dispose();

    private IReadOnlyList<int> Greedy(int n, IReadOnlyList<int>[]? prompts = null) =>
        _generator.Generate(prompts ?? Prompt, new GenerationOptions { MaxNewTokens = n })[0].TokenIds;

    [Test]
    public void SameSeedGivesTheSameSampleAndAnotherSeedAnother()
    {
        GenerationOptions Sampling(long seed) => new() { MaxNewTokens = 24, Temperature = 1.5f, Seed = seed };
        var a = _generator.Generate(Prompt, Sampling(7))[0].TokenIds;
        var b = _generator.Generate(Prompt, Sampling(7))[0].TokenIds;
        var c = _generator.Generate(Prompt, Sampling(8))[0].TokenIds;
        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.Not.EqualTo(a), "24 tokens at temperature 1.5 from another seed should differ somewhere");
        Assert.That(a, Is.Not.EqualTo(Greedy(24)), "sampling at temperature 1.5 should leave the greedy path");
    }

    [Test]
    public void FiltersThatKeepOneTokenReduceSamplingToGreedy()
    {
        var greedy = Greedy(12);
        foreach (var options in new[]
        {
            new GenerationOptions { MaxNewTokens = 12, Temperature = 2f, TopK = 1, Seed = 1 },
            new GenerationOptions { MaxNewTokens = 12, Temperature = 2f, TopP = 1e-6f, Seed = 2 },
            new GenerationOptions { MaxNewTokens = 12, Temperature = 2f, MinP = 1f, Seed = 3 },
        })
            Assert.That(_generator.Generate(Prompt, options)[0].TokenIds, Is.EqualTo(greedy),
                $"top-k {options.TopK}, top-p {options.TopP}, min-p {options.MinP}");
    }

    [Test]
    public void AnEosIdEndsTheRowAndIsKept()
    {
        var greedy = Greedy(16);
        int at = Enumerable.Range(1, greedy.Count - 1).First(i => !greedy.Take(i).Contains(greedy[i]));
        var result = _generator.Generate(Prompt, new GenerationOptions { MaxNewTokens = 16, EosTokenIds = new[] { greedy[at] } })[0];
        Assert.That(result.TokenIds, Is.EqualTo(greedy.Take(at + 1)));
        Assert.That(result.FinishReason, Is.EqualTo(FinishReason.EndOfSequence));
    }

    [Test]
    public void TheStopHookEndsOneRowWhileTheOthersContinue()
    {
        var second = new IReadOnlyList<int>[] { new[] { 9, 8, 7 } };
        var alone = Greedy(10, second);
        var results = _generator.Generate(new[] { Prompt[0], second[0] }, new GenerationOptions { MaxNewTokens = 10 }, stop: (row, _) => row == 0);
        Assert.That(results[0].TokenIds, Has.Count.EqualTo(1));
        Assert.That(results[0].FinishReason, Is.EqualTo(FinishReason.Stop));
        Assert.That(results[1].TokenIds, Is.EqualTo(alone), "a finished row is fed padding; the other row must not change");
        Assert.That(results[1].FinishReason, Is.EqualTo(FinishReason.Length));
    }

    [Test]
    public void StagesWithTheirOwnCachesGenerateAsTheWholeModel()
    {
        var stages = new[] { 0, 1 }.Select(i => HuggingFaceCheckpoint.Load(GoldenFixture.Tiny.ModelFolder,
            new Microsoft.ML.Qwen3Moe.Pipelining.PipelineStageInfo(i, 2))).ToArray();
        try
        {
            var prompts = new IReadOnlyList<int>[] { Prompt[0], new[] { 9, 8, 7 } };
            var options = new GenerationOptions { MaxNewTokens = 10 };
            var staged = new CausalLMGenerator(stages).Generate(prompts, options);
            var whole = _generator.Generate(prompts, options);
            for (int r = 0; r < prompts.Length; r++) Assert.That(staged[r].TokenIds, Is.EqualTo(whole[r].TokenIds), $"row {r}");
            Assert.Throws<ArgumentException>(() => new CausalLMGenerator(stages.Reverse().ToArray()));
        }
        finally
        {
            foreach (var s in stages) s.Dispose();
        }
    }

    [Test]
    public void CancellationIsHonouredBetweenTokens()
    {
        using var cts = new CancellationTokenSource();
        int steps = 0;
        Assert.Throws<OperationCanceledException>(() =>
        {
            foreach (var _ in _generator.Stream(Prompt, new GenerationOptions { MaxNewTokens = 50 }, cancellationToken: cts.Token))
                if (++steps == 3) cts.Cancel();
        });
        Assert.That(steps, Is.EqualTo(3));
    }

    [Test]
    public void BadInputsAreRejectedWithClearMessages()
    {
        Assert.That(Assert.Throws<ArgumentException>(() => _generator.Stream(new IReadOnlyList<int>[] { Array.Empty<int>() },
            new GenerationOptions()))!.Message,
            Does.Contain("Prompt 0 is empty"));
        Assert.That(Assert.Throws<ArgumentException>(() => _generator.Stream(new IReadOnlyList<int>[] { new[] { 1, 384 } }, new GenerationOptions()))!.Message,
            Does.Contain("token id 384"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => _generator.Stream(Prompt, new GenerationOptions { TopP = 0 }))!.ParamName,
            Is.EqualTo("TopP"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => _generator.Stream(Prompt, new GenerationOptions { MaxNewTokens = 0 }))!.ParamName,
            Is.EqualTo("MaxNewTokens"));
    }

    [Test]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOfSeenTokens()
    {
        using var scope = NewDisposeScope();
        using var sampler = new TokenSampler(new GenerationOptions { RepetitionPenalty = 2f }, CPU, 1, 4);
        sampler.Observe(tensor(new long[] { 0, 1, 1 }, new long[] { 1, 3 }), tensor(new long[] { 0, 1, 1 }, new long[] { 1, 3 }));
        // token 0 is padding (mask 0): not seen. Token 1 (logit 3) halves to 1.5, so token 2 (logit 2) wins.
        Assert.That(sampler.Next(tensor(new float[] { 0f, 3f, 2f, -1f }, new long[] { 1, 4 })).item<long>(), Is.EqualTo(2));
        sampler.Observe(tensor(new long[] { 2 }, new long[] { 1, 1 }));
        // now 1 -> 1.5, 2 -> 1.0, and a seen negative logit would double
        Assert.That(sampler.Next(tensor(new float[] { 0f, 3f, 2f, -1f }, new long[] { 1, 4 })).item<long>(), Is.EqualTo(1));
    }

    [Test]
    public void TopKAndTopPDrawOnlyFromTheKeptTokens()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[] { 1f, 4f, 3f, 0f, 2f }, new long[] { 1, 5 });   // probabilities ~ .03 .64 .23 .01 .09
        using var topK = new TokenSampler(new GenerationOptions { Temperature = 1f, TopK = 2, Seed = 5 }, CPU, 1, 5);
        using var topP = new TokenSampler(new GenerationOptions { Temperature = 1f, TopP = 0.8f, Seed = 5 }, CPU, 1, 5);
        var k = Enumerable.Range(0, 300).Select(_ => topK.Next(logits).item<long>()).ToHashSet();
        var p = Enumerable.Range(0, 300).Select(_ => topP.Next(logits).item<long>()).ToHashSet();
        Assert.That(k, Is.EquivalentTo(new long[] { 1, 2 }));
        Assert.That(p, Is.EquivalentTo(new long[] { 1, 2 }), "0.64 alone is below 0.8; 0.64 + 0.23 reaches it");
    }
}
