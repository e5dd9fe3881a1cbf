using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Qwen3Moe.Runtime;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Scoring;

/// <summary>Rows longer than the model can place are cut, never fail the whole Transform.</summary>
public class LongRowScoringTests
{
    [Test]
    public void ARowLongerThanMaxPositionEmbeddingsIsCutToThem()
    {
        var ml = new MLContext(seed: 1);
        var p = TestModels.TinyTextParameters();
        p = p with { Model = p.Model with { MaxPositionIds = 16 } };
        var (source, tokenizer) = TokenizerSource.Load(TestModels.TokenizerFolder);
        using var scorer = new Qwen3MoeTransformer(ml, StagedModel.Build(p, null, 7, new[] { CPU }, ScalarType.Float32), source, tokenizer,
            new Qwen3MoeScoringOptions { MaxSequenceLength = 64 });
        string longText = string.Join(" ", Enumerable.Repeat("The cat sat on the mat.", 20));
        var scored = scorer.Transform(TestModels.Texts(ml, longText, "short line"));
        var counts = scored.GetColumn<int>("TokenCount").ToArray();
        Assert.That(counts[0], Is.EqualTo(16), "min(MaxSequenceLength 64, max_position_embeddings 16)");
        Assert.That(TestModels.Vectors(scored, "LogProbabilities")[0], Has.Length.EqualTo(15));
        Assert.That(counts[1], Is.EqualTo(tokenizer.Encode("short line").Length));
    }
}
