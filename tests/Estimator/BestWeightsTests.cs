using Microsoft.ML.Qwen3Moe.Runtime;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

[TestFixture]
public class BestWeightsTests
{
    /// <summary>Only a lower loss replaces the kept copy, and Restore puts exactly those weights back.</summary>
    [Test]
    public void RestorePutsBackTheWeightsOfTheLowestLoss()
    {
        using var model = StagedModel.Build(TestModels.TinyTextParameters(), null, 5, new[] { CPU }, ScalarType.Float32);
        var stages = model.Stages;
        var executor = model.Executor;
        using var best = new BestWeights();
        var weight = stages[0].state_dict()["model.norm.weight"];
        using (no_grad()) weight.fill_(1.0f);
        Assert.That(best.Offer(executor, 2.0, step: 1), Is.True);
        using (no_grad()) weight.fill_(2.0f);
        Assert.That(best.Offer(executor, 3.0, step: 2), Is.False, "a higher loss keeps the earlier copy");
        Assert.That(best.Offer(executor, double.NaN, step: 3), Is.False, "a NaN loss is never best");
        using (no_grad()) weight.fill_(3.0f);
        best.Restore(executor);
        Assert.That(weight.data<float>().ToArray(), Has.All.EqualTo(1.0f));
        Assert.That((best.Step, best.Loss), Is.EqualTo((1, 2.0)));
        stages[0].Dispose();
    }
}
