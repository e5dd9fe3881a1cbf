using System.Text;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>Encoding and decoding give exactly what Hugging Face tokenizers gives (cases.json and any extra case files).</summary>
[TestFixture]
public class Qwen3TokenizerParityTests
{
    private static IEnumerable<TestCaseData> Cases() => TokenizerFixtures.EncodingCases();

    [TestCaseSource(nameof(Cases))]
    public void EncodeGivesReferenceIds(EncodingCase c)
    {
        Assert.That(TokenizerFixtures.Tokenizer.Encode(c.Text), Is.EqualTo(c.Ids));
    }

    [TestCaseSource(nameof(Cases))]
    public void DecodeGivesReferenceText(EncodingCase c)
    {
        Assert.That(TokenizerFixtures.Tokenizer.Decode(c.Ids), Is.EqualTo(c.Decoded));
    }

    [TestCaseSource(nameof(Cases))]
    public void StreamingDecodeEmitsNoReplacementCharacterAndMatchesDecode(EncodingCase c)
    {
        Qwen3StreamingDecoder decoder = TokenizerFixtures.Tokenizer.CreateStreamingDecoder();
        var text = new StringBuilder();
        foreach (int id in c.Ids)
        {
            string chunk = decoder.Append(id);
            Assert.That(chunk, Does.Not.Contain("\uFFFD"), $"after id {id}");
            text.Append(chunk);
        }

        text.Append(decoder.Flush());
        Assert.That(text.ToString(), Is.EqualTo(c.Decoded));
    }

    private static IEnumerable<TestCaseData> FixtureCases() => TokenizerFixtures.FixtureCases();

    /// <summary>
    /// The BpeTokenizer built by the BpeOptions recipe is exposed for ML.NET APIs; on the fixture's cases it must agree.
    /// Not on the edge cases: the library normalises (NFC) before it matches added tokens, so "&lt;think&gt;" followed by
    /// U+0338 becomes "&lt;think≯" there (hf-edge-cases.json[10]); <see cref="Qwen3Tokenizer.Encode"/> matches first, as HF does.
    /// </summary>
    [TestCaseSource(nameof(FixtureCases))]
    public void MicrosoftMLTokenizerRecipeAgrees(EncodingCase c)
    {
        Assert.That(TokenizerFixtures.Tokenizer.BpeTokenizer.EncodeToIds(c.Text), Is.EqualTo(c.Ids));
    }

    [Test]
    public void EncodeBatchGivesTheSameIdsAsEncodeOnEveryThreadCount()
    {
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        string[] texts = Cases().Select(c => ((EncodingCase)c.Arguments[0]!).Text).ToArray();
        string[] many = Enumerable.Range(0, 40).SelectMany(i => texts.Select(t => t + " #" + i)).ToArray();
        int[][] expected = many.Select(tokenizer.Encode).ToArray();
        foreach (int threads in new[] { 1, 2, 3, -1 })
        {
            Assert.That(tokenizer.EncodeBatch(many, threads), Is.EqualTo(expected), $"threads {threads}");
        }
    }

    [Test]
    public void DecodeSkipsSpecialTokensButKeepsThinkTags()
    {
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        int[] ids = tokenizer.Encode("<|im_start|>assistant\n<think>\nhm\n</think>\n\nHi<|im_end|>");
        Assert.That(tokenizer.Decode(ids, skipSpecialTokens: true), Is.EqualTo("assistant\n<think>\nhm\n</think>\n\nHi"));
        Assert.That(tokenizer.Decode(ids), Is.EqualTo("<|im_start|>assistant\n<think>\nhm\n</think>\n\nHi<|im_end|>"));
    }

    [Test]
    public void DecodeSkipsIdsThatAreNoToken()
    {
        // Qwen3-MoE's embedding has 151,936 rows; ids past the tokenizer's 151,669 are padding and decode to nothing.
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        Assert.That(tokenizer.Decode([9707, 151_900, -1, 1879]), Is.EqualTo("Hello world"));
    }

    [Test]
    public void StreamingDecoderHoldsBackSplitCharacterThenFlushesInvalidBytes()
    {
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        int[] ids = tokenizer.Encode("𠀀");
        Assert.That(ids, Has.Length.GreaterThan(1), "the CJK extension-B character should span several byte-level tokens");
        Qwen3StreamingDecoder decoder = tokenizer.CreateStreamingDecoder();
        Assert.That(decoder.Append(ids[0]), Is.Empty);
        Assert.That(decoder.Flush(), Is.EqualTo("\uFFFD"), "an incomplete character at the end of the stream is replaced");
        Assert.That(string.Concat(ids.Select(decoder.Append)) + decoder.Flush(), Is.EqualTo("𠀀"));
    }

    [Test]
    public void PropertiesMatchQwen3()
    {
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        Assert.Multiple(() =>
        {
            Assert.That(tokenizer.VocabularySize, Is.EqualTo(151_669));
            Assert.That(tokenizer.PadTokenId, Is.EqualTo(151_643));
            Assert.That(tokenizer.EosTokenId, Is.EqualTo(151_645));
            Assert.That(tokenizer.AddedTokens, Has.Count.EqualTo(26));
            Assert.That(tokenizer.AddedTokens.Single(t => t.Content == "<think>"), Is.EqualTo(new AddedToken("<think>", 151_667, false)));
            Assert.That(tokenizer.AddedTokens.Single(t => t.Content == "<|im_end|>").Special, Is.True);
        });
    }
}
