using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Scoring;

/// <summary>
/// Scoring with batches padded to a multiple of a length bucket (<see cref="Qwen3MoeScoringOptions.PadToMultipleOf"/>) gives
/// the scores and MoE routing counts of scoring without it, and the setting travels with a saved model.
/// </summary>
[TestFixture]
public class LengthBucketScoringTests
{
    private static readonly string[] Lines =
    {
        "The cat sat on the mat.",
        "A much longer line, so that the others in its batch are padded: the dog sat on the log by the door.",
        "Hi there",
        "x",
        "Twelve tokens or so, give or take a few of them.",
    };

    [Test]
    public void BucketPaddingKeepsEveryTokensScoreAndTheRoutingCounts()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Lines);
        using var plain = TestModels.RandomTextTransformer(ml, new Qwen3MoeScoringOptions { ScoringBatchSize = 3 });
        using var bucketed = TestModels.RandomTextTransformer(ml, new Qwen3MoeScoringOptions { ScoringBatchSize = 3, PadToMultipleOf = 64 });
        var a = TestModels.Vectors(plain.Transform(data), "LogProbabilities");
        var plainRouting = plain.LastRoutingStatistics;
        var scored = bucketed.Transform(data);
        var b = TestModels.Vectors(scored, "LogProbabilities");
        var bucketedRouting = bucketed.LastRoutingStatistics;
        Assert.That(scored.GetColumn<int>("TokenCount").ToArray(), Has.All.LessThan(64), "every batch is padded beyond its longest row");
        // float32 on the CPU: the padded batch differs only in its shape, so only summation order can move a value
        for (int i = 0; i < Lines.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]).Within(1e-5), $"row {i}");
        Assert.That(bucketedRouting.TokensRouted, Is.EqualTo(plainRouting.TokensRouted));
        Assert.That(bucketedRouting.TokensPerExpert, Is.EqualTo(plainRouting.TokensPerExpert), "padding positions are not counted");
    }

    [Test]
    public void TheBucketSizeIsSavedWithTheModel()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Lines);
        using var scorer = TestModels.RandomTextTransformer(ml, new Qwen3MoeScoringOptions { PadToMultipleOf = 128 });
        var path = Path.Combine(Path.GetTempPath(), $"qwen3moe-bucket-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(scorer, data.Schema, path);
            var fresh = new MLContext(seed: 2);
            fresh.ComponentCatalog.RegisterQwen3Moe();
            using var loaded = (Qwen3MoeTransformer)fresh.Model.Load(path, out _);
            Assert.That(loaded.ScoringOptions.PadToMultipleOf, Is.EqualTo(128));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ABucketSizeOutOfRangeIsRejectedNamingIt()
    {
        var ml = new MLContext(seed: 1);
        foreach (int bad in new[] { 0, -128, (1 << 24) + 1 })
        {
            var options = new Qwen3MoeScoringOptions { PadToMultipleOf = bad };
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => TestModels.RandomTextTransformer(ml, options));
            Assert.That(e!.ParamName, Is.EqualTo("PadToMultipleOf"), $"value {bad}");
        }
    }
}
