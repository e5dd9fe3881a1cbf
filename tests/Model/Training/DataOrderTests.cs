using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training;

public class DataOrderTests
{
    [Test]
    public void PermutationDependsOnlyOnSeedAndEpoch()
    {
        var a = DataOrder.Permutation(1000, seed: 42, epoch: 3);
        Assert.That(a.Order(), Is.EqualTo(Enumerable.Range(0, 1000)), "a permutation");
        Assert.That(DataOrder.Permutation(1000, 42, 3), Is.EqualTo(a), "reproducible");
        Assert.That(DataOrder.Permutation(1000, 42, 4), Is.Not.EqualTo(a), "another epoch, another order");
        Assert.That(DataOrder.Permutation(1000, 43, 3), Is.Not.EqualTo(a), "another seed, another order");
        Assert.That(a.Take(10), Is.Not.EqualTo(Enumerable.Range(0, 10)), "shuffled");
        // Pinned, so a change of algorithm (which would break the resume of existing runs) is noticed.
        Assert.That(DataOrder.Permutation(8, 1, 0), Is.EqualTo(PinnedOrder));
        Assert.That(DataOrder.Permutation(0, 1, 0), Is.Empty);
        Assert.Throws<ArgumentOutOfRangeException>(() => DataOrder.Permutation(-1, 1, 0));
    }

    private static readonly int[] PinnedOrder = { 2, 3, 7, 6, 5, 0, 1, 4 };
}
