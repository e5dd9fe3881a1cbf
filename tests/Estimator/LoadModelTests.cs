using Microsoft.ML.Data;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

[TestFixture]
public class LoadModelTests
{
    private string _temp = null!;

    [SetUp]
    public void SetUp() => _temp = Directory.CreateTempSubdirectory("qwen3moe-loadmodel-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_temp, recursive: true);

    private static readonly string[] Lines = { "The cat sat on the mat.", "A dog." };

    [Test]
    public void LoadModelRegistersAndLoadsInOneCallFromAPathOrAStream()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Lines);
        using var scorer = TestModels.RandomTextTransformer(ml);
        var path = Path.Combine(_temp, "model.zip");
        ml.Model.Save(scorer, data.Schema, path);
        var expected = TestModels.Vectors(scorer.Transform(data), "LogProbabilities");

        var fresh = new MLContext(seed: 2);
        var loaded = fresh.Qwen3Moe().LoadModel(path, out var schema);
        try
        {
            Assert.That(schema["Text"].Type, Is.EqualTo(TextDataViewType.Instance));
            Assert.That(TestModels.Vectors(loaded.Transform(TestModels.Texts(fresh, Lines)), "LogProbabilities"), Is.EqualTo(expected));
        }
        finally
        {
            (loaded as IDisposable)?.Dispose();
        }

        using var stream = File.OpenRead(path);
        var fromStream = new MLContext(seed: 3).Qwen3Moe().LoadModel(stream, out _);
        (fromStream as IDisposable)?.Dispose();
    }

    /// <summary>ML.NET's TransformerChain is IDisposable and disposes the transformers it holds: the Qwen3-MoE model's native memory is freed with
    /// it.</summary>
    [Test]
    public void DisposingALoadedOrFittedChainDisposesTheModelItHolds()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Lines);
        var scorer = TestModels.RandomTextTransformer(ml);
        var chain = ml.Transforms.CopyColumns("Original", "Text").Fit(data).Append(scorer);
        var path = Path.Combine(_temp, "chain.zip");
        ml.Model.Save(chain, data.Schema, path);
        chain.Dispose();
        Assert.Throws<ObjectDisposedException>(() => scorer.Transform(data));

        var loaded = new MLContext(seed: 2).Qwen3Moe().LoadModel(path, out _);
        var inner = ((TransformerChain<ITransformer>)loaded).OfType<Qwen3MoeTransformer>().Single();
        Assert.That(loaded, Is.InstanceOf<IDisposable>());
        ((IDisposable)loaded).Dispose();
        Assert.Throws<ObjectDisposedException>(() => inner.Transform(data));
    }
}
