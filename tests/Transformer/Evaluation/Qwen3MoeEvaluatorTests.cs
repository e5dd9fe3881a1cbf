using System.Text;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Evaluation;

[TestFixture]
public class Qwen3MoeEvaluatorTests
{
    private static readonly string?[] Lines =
    {
        "The cat sat on the mat.",
        "A much longer line, so that the others in its batch are padded: the dog sat on the log by the door — naïve café.",
        "x",
        "",
        null,
    };

    private sealed class NumberRow
    {
        public float Text { get; set; }

        public float LogProbabilities { get; set; }
    }

    [Test]
    public void MetricsAreTokenWeightedOverTheScoredColumn()
    {
        var ml = new MLContext(seed: 1);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var scored = scorer.Transform(TestModels.Texts(ml, Lines));
        var logps = TestModels.Vectors(scored, "LogProbabilities");
        var metrics = ml.Qwen3Moe().Evaluate(scored);

        double total = -logps.Sum(r => r.Sum(v => (double)v));
        long tokens = logps.Sum(r => (long)r.Length);
        long bytes = Lines.Where((_, i) => logps[i].Length > 0).Sum(t => (long)Encoding.UTF8.GetByteCount(t!));
        Assert.That(metrics.Rows, Is.EqualTo(Lines.Length));
        Assert.That(metrics.Tokens, Is.EqualTo(tokens).And.GreaterThan(20));
        Assert.That(metrics.TotalNegativeLogLikelihood, Is.EqualTo(total).Within(1e-9).Percent);
        Assert.That(metrics.MeanNegativeLogLikelihood, Is.EqualTo(total / tokens).Within(1e-9).Percent);
        Assert.That(metrics.Perplexity, Is.EqualTo(Math.Exp(total / tokens)).Within(1e-9).Percent);
        Assert.That(metrics.Bytes, Is.EqualTo(bytes));
        Assert.That(metrics.BitsPerByte, Is.EqualTo(total / (Math.Log(2) * bytes)).Within(1e-9).Percent);
        // token-weighted, not the mean of the rows' perplexities
        var rowMean = TestModels.Floats(scored, "Perplexity").Where(float.IsFinite).Average(p => (double)p);
        Assert.That(metrics.Perplexity, Is.Not.EqualTo(rowMean).Within(1e-3).Percent);
    }

    [Test]
    public void WithoutATextColumnBitsPerByteIsLeftOut()
    {
        var ml = new MLContext(seed: 1);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var metrics = ml.Qwen3Moe().Evaluate(scorer.Transform(TestModels.Texts(ml, Lines)), textColumnName: null);
        Assert.That(metrics.Bytes, Is.Zero);
        Assert.That(metrics.BitsPerByte, Is.NaN);
        Assert.That(metrics.Perplexity, Is.GreaterThan(1));
    }

    [Test]
    public void NoTokensGiveNaNMetrics()
    {
        var ml = new MLContext(seed: 1);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var metrics = ml.Qwen3Moe().Evaluate(scorer.Transform(TestModels.Texts(ml, "x", "")));
        Assert.That(metrics.Rows, Is.EqualTo(2));
        Assert.That(metrics.Tokens, Is.Zero);
        Assert.That(metrics.MeanNegativeLogLikelihood, Is.NaN);
        Assert.That(metrics.Perplexity, Is.NaN);
    }

    [Test]
    public void MissingOrMistypedColumnsGiveMlNetMessages()
    {
        var ml = new MLContext(seed: 1);
        var unscored = TestModels.Texts(ml, "The cat sat.");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().Evaluate(unscored));
        Assert.That(e!.Message, Does.StartWith("Could not find log-probabilities column 'LogProbabilities'"));
        Assert.That(e.ParamName, Is.EqualTo("data"));

        var numbers = ml.Data.LoadFromEnumerable(new[] { new NumberRow() });
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().Evaluate(numbers));
        Assert.That(e!.Message, Does.StartWith("Schema mismatch for log-probabilities column 'LogProbabilities': expected Vector<Single>, got Single"));

        using var scorer = TestModels.RandomTextTransformer(ml);
        var scored = scorer.Transform(unscored);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().Evaluate(scored, textColumnName: "Prompt"));
        Assert.That(e!.Message, Does.StartWith("Could not find text column 'Prompt'"));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Qwen3Moe().Evaluate(scored, textColumnName: "TokenCount"));
        Assert.That(e!.Message, Does.StartWith("Schema mismatch for text column 'TokenCount': expected String, got Int32"));
    }
}
