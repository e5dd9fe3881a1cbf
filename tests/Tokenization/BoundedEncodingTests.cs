using System.Text;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>Encoding with a token budget gives exactly the full encoding's first ids, and stops early on a huge text.</summary>
public class BoundedEncodingTests
{
    private static IEnumerable<string> Texts()
    {
        foreach (var d in TokenizerFixtures.EncodingCases()) yield return ((EncodingCase)d.Arguments[0]!).Text;
        string corpus = TokenizerFixtures.ReadBenchCorpus();
        for (int start = 0; start + 4000 <= corpus.Length && start < 200_000; start += 9973) yield return corpus.Substring(start, 4000);
        yield return corpus[..Math.Min(corpus.Length, 60_000)];
    }

    [Test]
    public void ABudgetGivesExactlyTheFirstIdsOfTheFullEncoding()
    {
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        int compared = 0;
        foreach (string text in Texts())
        {
            int[] full = tokenizer.Encode(text);
            foreach (int budget in new[] { 1, 2, 3, 5, 8, 17, 64, 511, 512, 2048, full.Length, full.Length + 1 }.Where(b => b > 0))
            {
                Assert.That(tokenizer.EncodePrefix(text, budget), Is.EqualTo(full.Take(budget).ToArray()), $"budget {budget}, text starting " +
                    $"'{text[..Math.Min(40, text.Length)]}'");
                compared++;
            }
        }

        var batch = Texts().Take(40).ToList();
        int[][] bounded = tokenizer.EncodeBatch(batch, maxTokens: 7);
        for (int i = 0; i < batch.Count; i++) Assert.That(bounded[i], Is.EqualTo(tokenizer.Encode(batch[i]).Take(7).ToArray()), $"batch row {i}");
        Assert.That(compared, Is.GreaterThan(500));
    }

    [Test]
    public void AHugeTextIsEncodedOnlyAsFarAsTheBudget()
    {
        // 200,000 distinct words: the piece cache counts the pieces actually encoded, so it shows how far encoding went
        var text = new StringBuilder();
        for (int i = 0; i < 200_000; i++)
        {
            text.Append(' ');
            for (int n = i + 26 * 26 * 26; n > 0; n /= 26) text.Append((char)('a' + n % 26));
        }

        Qwen3Tokenizer fresh = Qwen3Tokenizer.FromFolder(TokenizerFixtures.Folder);
        int[] ids = fresh.EncodePrefix(text.ToString(), 512);
        Assert.That(ids, Has.Length.EqualTo(512));
        Assert.That(fresh.CachedPieceCount, Is.LessThanOrEqualTo(512), "pieces encoded beyond the budget");
    }
}
