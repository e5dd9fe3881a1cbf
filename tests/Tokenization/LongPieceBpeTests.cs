using Microsoft.ML.Qwen3Moe.Tokenization;
using Microsoft.ML.Tokenizers;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>The O(n log n) BPE used for long pieces gives the ids of Microsoft.ML.Tokenizers' BPE.</summary>
[TestFixture]
public class LongPieceBpeTests
{
    private static readonly Lazy<LongPieceBpe> s_bpe = new(() =>
    {
        using Stream json = File.OpenRead(TokenizerFixtures.TokenizerJson);
        TokenizerDefinition definition = TokenizerFiles.ReadTokenizerJson(json, TokenizerFixtures.TokenizerJson);
        return new LongPieceBpe(definition.Vocabulary, definition.Merges, definition.Source);
    });

    [Test]
    public void AgreesWithTheLibraryOnEveryPieceOfTheCorpus()
    {
        string corpus = TokenizerFixtures.ReadBenchCorpus();
        var pieces = new HashSet<string>(StringComparer.Ordinal);
        foreach (string line in corpus.Split('\n'))
        {
            string text = line.Normalize(System.Text.NormalizationForm.FormC);
            for (int i = 0; i < text.Length;)
            {
                int end = Qwen2PreTokenizer.NextPieceEnd(text, i);
                pieces.Add(text[i..end]);
                i = end;
            }
        }

        Assert.That(pieces, Has.Count.GreaterThan(10_000));
        foreach (string piece in pieces)
        {
            AssertSameAsLibrary(piece);
        }
    }

    [TestCase("a", 300)]
    [TestCase("!", 500)]
    [TestCase(" ", 400)]
    [TestCase("中文", 200)]
    [TestCase("ab", 300)]
    [TestCase("abc", 200)]
    [TestCase("\u9F98", 300)]
    [TestCase("😀", 150)]
    [TestCase("-=", 300)]
    public void AgreesWithTheLibraryOnLongRepetitivePieces(string unit, int repeat)
    {
        AssertSameAsLibrary(string.Concat(Enumerable.Repeat(unit, repeat)));
    }

    [Test]
    public void AgreesWithTheLibraryOnLongRandomWords()
    {
        var random = new Random(11);
        const string letters = "abcdefghijklmnopqrstuvwxyzéèàüößñçABCDEFGHIJKLMNOPQRSTUVWXYZ中文字典日本語";
        for (int k = 0; k < 50; k++)
        {
            AssertSameAsLibrary(new string(Enumerable.Range(0, 300 + k).Select(_ => letters[random.Next(letters.Length)]).ToArray()));
        }
    }

    private static void AssertSameAsLibrary(string piece)
    {
        BpeTokenizer library = TokenizerFixtures.Tokenizer.BpeTokenizer;
        var ids = new IdBuffer();
        s_bpe.Value.Encode(piece, ids);
        Assert.That(ids.Span.ToArray(), Is.EqualTo(library.EncodeToIds(piece, considerPreTokenization: false, considerNormalization: false)),
            piece.Length > 80 ? piece[..80] + "..." : piece);
    }
}
