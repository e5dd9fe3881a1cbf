using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Generation;

/// <summary>Reasoning/answer splitting (whole replies and streams), multi-turn history, and stop-sequence hold-back.</summary>
public class ReplySplittingTests
{
    [TestCase("<think>\nI should say blue.\n</think>\n\nBlue.", "I should say blue.", "Blue.")]
    [TestCase("Blue.", "", "Blue.")]
    [TestCase("<think>\n\n</think>\n\nBlue.", "", "Blue.")]
    [TestCase("<think>\nstill thinking when the budget ran out", "still thinking when the budget ran out", "")]
    public void ParseSplitsReasoningFromTheAnswer(string text, string reasoning, string answer) =>
        Assert.That(Qwen3ChatReply.Parse(text), Is.EqualTo(new Qwen3ChatReply(reasoning, answer)));

    [Test]
    public void TheSplitterFindsTagsCutAcrossPieces()
    {
        var splitter = new ReasoningSplitter();
        var pieces = new[] { "<th", "ink>\nhm", "m, blue", ".\n</th", "ink>\n", "\nBl", "ue." }
            .SelectMany(p => splitter.Push(p)).Concat(splitter.Push(string.Empty, final: true)).ToList();
        Assert.That(string.Concat(pieces.Where(p => p.Reasoning).Select(p => p.Text)), Is.EqualTo("hmm, blue.\n"));
        Assert.That(string.Concat(pieces.Where(p => !p.Reasoning).Select(p => p.Text)), Is.EqualTo("Blue."));
    }

    [Test]
    public void HistoryKeepsOnlyTheAnswersOfEarlierTurns()
    {
        var first = Qwen3ChatReply.Parse("<think>\nSecret reasoning.\n</think>\n\nBlue.");
        var history = new[] { ChatMessage.User("Name a color."), first.ToMessage(), ChatMessage.User("Another.") };
        var text = Qwen3ChatTemplate.Qwen3.Render(history);
        Assert.That(text, Does.Not.Contain("Secret reasoning"));
        Assert.That(text, Does.Contain("<|im_start|>assistant\nBlue.<|im_end|>"));
        // as the last turn (after the last user query) the reasoning is kept
        var last = Qwen3ChatTemplate.Qwen3.Render(new[] { ChatMessage.User("Name a color."), first.ToMessage() }, addGenerationPrompt: false);
        Assert.That(last, Does.Contain("<think>\nSecret reasoning.\n</think>\n\nBlue."));
    }

    [Test]
    public void TheStopMatcherHoldsBackPossibleStarts()
    {
        var m = new StopSequenceMatcher(new[] { "END" });
        Assert.That(m.Append("abc E"), Is.EqualTo("abc "));
        Assert.That(m.Append("N"), Is.Empty);
        Assert.That(m.Append("x"), Is.EqualTo("ENx"));
        Assert.That(m.Append("yE"), Is.EqualTo("y"));
        Assert.That(m.Append("ND and more"), Is.Empty);
        Assert.That(m.Stopped, Is.True);
        Assert.That(m.Flush(), Is.Empty);
        var open = new StopSequenceMatcher(new[] { "END" });
        Assert.That(open.Append("tail E") + open.Flush(), Is.EqualTo("tail E"));
    }
}
