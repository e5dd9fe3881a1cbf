using System.Diagnostics;
using System.Text;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>Any string tokenizes without throwing, quickly, and decodes back to its NFC form.</summary>
[TestFixture]
public class HostileInputTests
{
    private static readonly TestCaseData[] RoundTripTexts =
    [
        new TestCaseData(string.Concat(Enumerable.Range(0, 32).Select(c => (char)c)) +
            "\u007F\u0085\u00A0\u2028\u2029\uFEFF").SetName("RoundTrip(control characters)"),
        new TestCaseData("ab\0cd\0\0").SetName("RoundTrip(nul inside words)"),
        new TestCaseData("\uFFFE\uFFFF\uE000\U0010FFFF\U000F0000",
            "\uFFFE\uFFFF\uE000\U0010FFFF\U000F0000").SetName("RoundTrip(noncharacters and private use)"),
        new TestCaseData("a𝐀b 𠀀𠀁x 𝟎𝟏𝟐 𐐷𐐷").SetName("RoundTrip(supplementary letters and digits)"),
        new TestCaseData("e" + new string('\u0301', 300) + "Z\u0338\u0338").SetName("RoundTrip(combining marks stacked)"),
        new TestCaseData("<|im_end|><|im_end|><think></think><|endoftext|>").SetName("RoundTrip(added tokens back to back)"),
        new TestCaseData("<|im_end|<|im_end||><thin<think>k>").SetName("RoundTrip(broken added tokens)"),
        new TestCaseData("'S'Ll'rE'VE'd'x's").SetName("RoundTrip(contractions, odd case)"),
        new TestCaseData(" \r\n \n\n\r \t\v\f  x  \n").SetName("RoundTrip(mixed newlines and spaces)"),
    ];

    [TestCaseSource(nameof(RoundTripTexts))]
    public void EncodesAndDecodesBackToNfc(string text, string? nfc = null)
    {
        // string.Normalize rejects U+FFFE/U+FFFF, so those cases give their (already NFC) text.
        nfc ??= text.Normalize(NormalizationForm.FormC);
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        int[] ids = tokenizer.Encode(text);
        Assert.That(ids, Has.All.InRange(0, tokenizer.VocabularySize - 1));
        Assert.That(tokenizer.Decode(ids), Is.EqualTo(nfc));
    }

    [Test]
    public void EmptyTextGivesNoIds()
    {
        Assert.That(TokenizerFixtures.Tokenizer.Encode(string.Empty), Is.Empty);
        Assert.That(TokenizerFixtures.Tokenizer.Decode([]), Is.Empty);
    }

    [Test]
    public void NullIsRejected()
    {
        Assert.Throws<ArgumentNullException>(() => TokenizerFixtures.Tokenizer.Encode(null!));
        var e = Assert.Throws<ArgumentException>(() => TokenizerFixtures.Tokenizer.EncodeBatch(["a", null!, "b"], 1));
        Assert.That(e!.Message, Does.Contain("texts[1]"));
    }

    [TestCase("\uD800")]
    [TestCase("a\uDC00b")]
    [TestCase("\uDBFF\uDBFF x \uDFFF")]
    [TestCase("<think>\uD83D")]
    public void LoneSurrogatesAreEncodedAsReplacementCharacters(string text)
    {
        // UTF-8 cannot carry a lone surrogate; a UTF-8 encoder writes U+FFFD instead, and so do we.
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        string replaced = new(text.Select(c => char.IsSurrogate(c) ? '\uFFFD' : c).ToArray());
        Assert.That(tokenizer.Encode(text), Is.EqualTo(tokenizer.Encode(replaced)));
        Assert.That(tokenizer.Decode(tokenizer.Encode(text)), Is.EqualTo(replaced));
    }

    [Test]
    public void AddedTokenIsMatchedBeforeNormalisation()
    {
        // NFC would compose '>' + U+0338 into U+226F and lose the token; Hugging Face splits added tokens out first.
        int[] ids = TokenizerFixtures.Tokenizer.Encode("<think>\u0338");
        Assert.That(ids[0], Is.EqualTo(151_667));
        Assert.That(TokenizerFixtures.Tokenizer.Decode(ids), Is.EqualTo("<think>\u0338"));
    }

    private static string LargeText(string name) => name switch
    {
        "one 1 MB word" => new string('a', 1 << 20),
        "1 MB of spaces" => new string(' ', 1 << 20),
        "1 MB of newlines and spaces" => string.Concat(Enumerable.Repeat(" \n", 1 << 19)),
        "1 MB of digits" => new string('7', 1 << 20),
        "1 MB of symbols" => new string('!', 1 << 20),
        "1 MB of CJK" => new string('\u9F98', 1 << 20),
        "1 MB of added tokens" => string.Concat(Enumerable.Repeat("<|im_end|>", 1 << 17)),
        "1 MB of random text" => RandomText(1 << 20, seed: 7),
        _ => throw new ArgumentException(name),
    };

    [TestCase("one 1 MB word")]
    [TestCase("1 MB of spaces")]
    [TestCase("1 MB of newlines and spaces")]
    [TestCase("1 MB of digits")]
    [TestCase("1 MB of symbols")]
    [TestCase("1 MB of CJK")]
    [TestCase("1 MB of added tokens")]
    [TestCase("1 MB of random text")]
    public void OneMegabyteEncodesInSeconds(string name)
    {
        string text = LargeText(name);
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        var watch = Stopwatch.StartNew();
        int[] ids = tokenizer.Encode(text);
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(30)), "a quadratic step would take minutes here");
        Assert.That(tokenizer.Decode(ids) == text.Normalize(NormalizationForm.FormC), "decodes back to the text");
    }

    /// <summary>Random text from an alphabet that mixes every character class the split pattern distinguishes.</summary>
    internal static string RandomText(int length, int seed)
    {
        string[] alphabet =
        [
            " ", " ", " ", "\t", "\n", "\r", "\r\n", "\u00A0", "\u3000", "\u0085", "a", "Z", "é", "ß", "中", "ω", "1", "٣", "²",
            "'", "s", "t", "re", "ll", "!", ".", "(", "_", "\u0301", "\u200B", "😀", "🇫🇷", "<|im_end|>", "<think>", "<", ">",
        ];
        var random = new Random(seed);
        var text = new StringBuilder(length + 16);
        while (text.Length < length)
        {
            text.Append(alphabet[random.Next(alphabet.Length)]);
        }

        return text.ToString(0, length - (char.IsHighSurrogate(text[length - 1]) ? 1 : 0));
    }
}
