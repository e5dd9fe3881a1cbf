using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Tests.Tokenization;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Batching;

/// <summary>Right padding, attention mask, labels with -100, truncation.</summary>
[TestFixture]
public class TokenBatcherTests
{
    private const int Pad = 151_643;
    private const long X = CausalLMLoss.IgnoreIndex;

    [Test]
    public void PadsOnTheRightWithMaskAndIgnoredLabels()
    {
        TokenBatch batch = new TokenBatcher(Pad).Pad([[1, 2, 3], [4], []]);
        Assert.Multiple(() =>
        {
            Assert.That(batch.Shape, Is.EqualTo(new long[] { 3, 3 }));
            Assert.That(batch.InputIds, Is.EqualTo(new long[] { 1, 2, 3, 4, Pad, Pad, Pad, Pad, Pad }));
            Assert.That(batch.AttentionMask, Is.EqualTo(new long[] { 1, 1, 1, 1, 0, 0, 0, 0, 0 }));
            Assert.That(batch.Labels, Is.EqualTo(new long[] { 1, 2, 3, 4, X, X, X, X, X }));
            Assert.That(batch.Lengths, Is.EqualTo(new[] { 3, 1, 0 }));
            Assert.That(batch.IndexOf(1, 2), Is.EqualTo(5));
        });
    }

    [Test]
    public void TruncatesRightOrLeft()
    {
        int[][] sequences = [[1, 2, 3, 4, 5], [6, 7]];
        Assert.That(new TokenBatcher(Pad, maxLength: 3).Pad(sequences).InputIds, Is.EqualTo(new long[] { 1, 2, 3, 6, 7, Pad }));
        Assert.That(new TokenBatcher(Pad, maxLength: 3, TruncationSide.Left).Pad(sequences).InputIds, Is.EqualTo(new long[] { 3, 4, 5, 6, 7, Pad }));
    }

    [Test]
    public void PromptTokensAreIgnoredInLabelsAlsoAfterLeftTruncation()
    {
        int[][] sequences = [[1, 2, 3, 4, 5], [6, 7]];
        TokenBatch batch = new TokenBatcher(Pad, maxLength: 4, TruncationSide.Left).Pad(sequences, promptLengths: [3, 1]);
        Assert.That(batch.InputIds, Is.EqualTo(new long[] { 2, 3, 4, 5, 6, 7, Pad, Pad }));
        Assert.That(batch.Labels, Is.EqualTo(new long[] { X, X, 4, 5, X, 7, X, X }));
    }

    [Test]
    public void PadsToAMultiple()
    {
        TokenBatch batch = new TokenBatcher(Pad, padToMultipleOf: 8).Pad([[1, 2, 3]]);
        Assert.That(batch.SequenceLength, Is.EqualTo(8));
        Assert.That(batch.AttentionMask.Sum(), Is.EqualTo(3));
    }

    [Test]
    public void PaddingToAMultipleStopsAtTheMaximumLength()
    {
        var batcher = new TokenBatcher(Pad, maxLength: 10, padToMultipleOf: 8);
        Assert.That(batcher.Pad([[1, 2, 3]]).SequenceLength, Is.EqualTo(8));
        TokenBatch capped = batcher.Pad([[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2]]);
        Assert.That(capped.SequenceLength, Is.EqualTo(10), "rounding up to 16 would pass maxLength");
        Assert.That(capped.Lengths, Is.EqualTo(new[] { 9, 2 }));
        Assert.That(capped.AttentionMask.Sum(), Is.EqualTo(11));
        Assert.That(capped.Labels.Count(l => l != X), Is.EqualTo(11), "padding is labelled -100");
    }

    [Test]
    public void WorksOnTokenizerOutput()
    {
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        int[][] ids = tokenizer.EncodeBatch(["Hello world", "Hello, world!"]);
        TokenBatch batch = new TokenBatcher(tokenizer.PadTokenId).Pad(ids);
        Assert.That(batch.InputIds, Is.EqualTo(new long[] { 9707, 1879, Pad, Pad, 9707, 11, 1879, 0 }));
    }

    [Test]
    public void BadArgumentsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new TokenBatcher(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new TokenBatcher(Pad, maxLength: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new TokenBatcher(Pad, padToMultipleOf: 0));
        var batcher = new TokenBatcher(Pad);
        Assert.Throws<ArgumentException>(() => batcher.Pad([]));
        Assert.Throws<ArgumentException>(() => batcher.Pad([[1], null!]));
        Assert.Throws<ArgumentException>(() => batcher.Pad([[1, 2]], promptLengths: [3]));
        Assert.Throws<ArgumentException>(() => batcher.Pad([[1, 2]], promptLengths: [1, 1]));
    }
}
