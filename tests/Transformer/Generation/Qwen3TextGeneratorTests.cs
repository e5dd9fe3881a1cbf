using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Generation;

/// <summary>Text-level generation on a random tiny model with the real Qwen3 tokenizer: batching, stop sequences, streaming, chat.</summary>
public class Qwen3TextGeneratorTests
{
    private static readonly string[] Prompts = { "The cat sat on the", "Hello", "A much longer prompt, so that the others are left padded in the batch:" };
    private Qwen3MoeTransformer _model = null!;
    private Qwen3TextGenerator _generator = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _model = TestModels.RandomTextTransformer(new MLContext(seed: 1));
        _generator = _model.TextGenerator;
    }

    [OneTimeTearDown]
    public void Unload() => _model.Dispose();

    private static TextGenerationOptions Greedy(int n = 12) => new() { MaxNewTokens = n, EosTokenIds = Array.Empty<int>() };

    [Test]
    public void ABatchGivesEachPromptItsOwnCompletion()
    {
        var batch = _generator.Generate(Prompts, Greedy());
        for (int i = 0; i < Prompts.Length; i++)
        {
            var alone = _generator.Generate(new[] { Prompts[i] }, Greedy())[0];
            Assert.That(batch[i].TokenIds, Is.EqualTo(alone.TokenIds), Prompts[i]);
            Assert.That(batch[i].Text, Is.EqualTo(_generator.Tokenizer.Decode(alone.TokenIds, skipSpecialTokens: true)));
            Assert.That(batch[i].PromptTokenCount, Is.EqualTo(_generator.Tokenizer.Encode(Prompts[i]).Length));
        }
    }

    [Test]
    public void AStopSequenceCutsTheTextBeforeIt()
    {
        var full = _generator.Generate(new[] { Prompts[0] }, Greedy(24))[0];
        Assume.That(full.Text.Length, Is.GreaterThan(8), "the random model produced too little text");
        string stop = full.Text.Substring(full.Text.Length / 2, 2);
        var options = Greedy(24);
        options.StopSequences.Add(stop);
        var cut = _generator.Generate(new[] { Prompts[0] }, options)[0];
        Assert.That(cut.Text, Is.EqualTo(full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)]));
        Assert.That(cut.FinishReason, Is.EqualTo(FinishReason.Stop));
        Assert.That(full.TokenIds.Take(cut.TokenIds.Count), Is.EqualTo(cut.TokenIds), "same tokens up to the stop");
    }

    [Test]
    public void StreamingGivesTheTextOfTheBatchedCall()
    {
        var expected = _generator.Generate(new[] { Prompts[1] }, Greedy(16))[0];
        var deltas = _generator.Stream(Prompts[1], Greedy(16)).ToList();
        Assert.That(string.Concat(deltas.Select(d => d.Text)), Is.EqualTo(expected.Text));
        Assert.That(deltas[^1].FinishReason, Is.EqualTo(FinishReason.Length));
        Assert.That(deltas[^1].TokenCount, Is.EqualTo(16));
        Assert.That(deltas.Take(deltas.Count - 1).All(d => d.FinishReason is null), Is.True);
    }

    [Test]
    public void AbandonedStreamsReleaseTheModel()
    {
        foreach (var _ in _generator.Stream(Prompts[0], Greedy(50))) break;
        // the generator admits one generation at a time: this would wait forever if the first had kept the gate
        Assert.That(_generator.Generate(new[] { Prompts[0] }, Greedy(2))[0].TokenIds, Has.Count.EqualTo(2));
    }

    [Test]
    public void DefaultEosIdsAreTheTokenizersEndTokens()
    {
        var tok = _generator.Tokenizer;
        var ids = tok.AddedTokens.Where(t => t.Content is "<|im_end|>" or "<|endoftext|>").Select(t => t.Id);
        Assert.That(_generator.EosTokenIds, Is.EquivalentTo(ids.Append(tok.EosTokenId).Distinct()));
        Assert.That(Qwen3TextGenerator.DefaultEosTokenIds(tok, new[] { 7 }), Does.Contain(7));
    }

    [Test]
    public void ChatRendersTheTemplateAndSplitsTheReply()
    {
        var messages = new[] { ChatMessage.User("Name a color.") };
        var (reply, completion) = _generator.Chat(messages, enableThinking: false, Greedy(8));
        var direct = _generator.GenerateIds(new[] { (IReadOnlyList<int>)_generator.Tokenizer.EncodeChat(messages, enableThinking: false) }, Greedy(8))[0];
        Assert.That(completion.TokenIds, Is.EqualTo(direct.TokenIds));
        Assert.That(reply, Is.EqualTo(Qwen3ChatReply.Parse(direct.Text)));
    }
}
