using System.Text.RegularExpressions;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>The hand-written split equals the Qwen2 regex wherever .NET's regex means what Hugging Face's means.</summary>
[TestFixture]
public class Qwen2PreTokenizerTests
{
    private static readonly Regex s_regex = new(Qwen2PreTokenizer.Pattern, RegexOptions.Compiled);

    [Test]
    public void SplitsTheBenchmarkCorpusAsTheRegexDoes()
    {
        string corpus = TokenizerFixtures.ReadBenchCorpus();
        foreach (string line in corpus.Split('\n'))
        {
            Assert.That(Split(line), Is.EqualTo(RegexSplit(line)), line);
        }
    }

    [Test]
    public void SplitsRandomTextAsTheRegexDoes()
    {
        // Only BMP characters: .NET's regex sees the two halves of a surrogate pair as two symbols, Hugging Face one.
        for (int seed = 0; seed < 3000; seed++)
        {
            string text = HostileInputTests.RandomText(1 + (seed % 40), seed).Replace("😀", "¤").Replace("🇫🇷", "§");
            Assert.That(Split(text), Is.EqualTo(RegexSplit(text)), $"seed {seed}: {Regex.Escape(text)}");
        }
    }

    [TestCase("a𝐀b c", new[] { "a𝐀b", " c" })]
    [TestCase("😀s<😀<", new[] { "😀s", "<😀<" })]
    [TestCase("x𝟎𝟏", new[] { "x", "𝟎", "𝟏" })]
    [TestCase("'ſ'S'LL'Re", new[] { "'ſ", "'S", "'LL", "'Re" })]
    [TestCase("  hello\n\n  world  ", new[] { " ", " hello", "\n\n", " ", " world", "  " })]
    [TestCase(" (x)\r\n", new[] { " (", "x", ")\r\n" })]
    public void SplitsOnCodePointsAsHuggingFaceDoes(string text, string[] pieces)
    {
        Assert.That(Split(text), Is.EqualTo(pieces));
    }

    private static List<string> Split(string text)
    {
        var pieces = new List<string>();
        for (int i = 0; i < text.Length;)
        {
            int end = Qwen2PreTokenizer.NextPieceEnd(text, i);
            Assert.That(end, Is.GreaterThan(i), "every position must start a non-empty piece");
            pieces.Add(text[i..end]);
            i = end;
        }

        return pieces;
    }

    private static List<string> RegexSplit(string text) => s_regex.Matches(text).Select(m => m.Value).ToList();
}
