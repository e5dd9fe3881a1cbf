using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using Microsoft.ML.Qwen3Moe.Tokenization;
using Microsoft.ML.Tokenizers;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary><see cref="Qwen3TokenizerAdapter"/> behaves as a Microsoft.ML.Tokenizers <see cref="Tokenizer"/> with Qwen3Tokenizer's ids.</summary>
public class Qwen3TokenizerAdapterTests
{
    private static readonly Qwen3Tokenizer Qwen = Qwen3Tokenizer.FromFolder(TestModels.TokenizerFolder);
    private static readonly Tokenizer Adapter = new Qwen3TokenizerAdapter(Qwen);

    [TestCase("Hello, world! The cat sat on the mat.")]
    [TestCase("<|im_start|>user\nÜber 東京 🌍<|im_end|>")]
    [TestCase("")]
    public void IdsOffsetsAndDecodingFollowTheQwenTokenizer(string text)
    {
        Assert.That(Adapter.EncodeToIds(text), Is.EqualTo(Qwen.Encode(text)));
        Assert.That(Adapter.CountTokens(text), Is.EqualTo(Qwen.Encode(text).Length));
        var tokens = Adapter.EncodeToTokens(text, out string? normalized);
        Assert.That(normalized, Is.Null);
        Assert.That(tokens.Select(t => t.Id), Is.EqualTo(Qwen.Encode(text)));
        // offsets tile the text (a token inside a multi-byte character covers that character)
        int end = 0;
        foreach (var t in tokens)
        {
            var (start, length) = t.Offset.GetOffsetAndLength(text.Length);
            Assert.That(start, Is.LessThanOrEqualTo(end));
            end = Math.Max(end, start + length);
        }
        Assert.That(end, Is.EqualTo(text.Length));
        Assert.That(Adapter.Decode(Qwen.Encode(text)), Is.EqualTo(text));
    }

    [Test]
    public void MaxTokenCountAndSmallDestinations()
    {
        const string text = "one two three four five";
        var ids = Qwen.Encode(text);
        var first = Adapter.EncodeToIds(text, 2, out _, out int consumed);
        Assert.That(first, Is.EqualTo(ids.Take(2)));
        Assert.That(text[..consumed], Is.EqualTo(Qwen.Decode(ids.Take(2))));
        Span<char> small = stackalloc char[8];
        var status = Adapter.Decode(ids, small, out int used, out int written);
        Assert.That(status, Is.EqualTo(System.Buffers.OperationStatus.DestinationTooSmall));
        Assert.That(small[..written].ToString(), Is.EqualTo(Qwen.Decode(ids.Take(used))));
        Assert.That(written, Is.LessThanOrEqualTo(8));
    }
}
