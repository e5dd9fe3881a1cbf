using Microsoft.ML.Qwen3Moe.Batching;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Batching;

public class SequencePackerTests
{
    [Test]
    public void BestFitDecreasingFillsRowsWhereInOrderFillingWouldNot()
    {
        // longest first: 6 -> row A (room 4), 5 -> row B (room 5), 4 -> A (best fit, full), 3 -> B (room 2), 2 -> B (full);
        // filling in input order would need three rows ([6], [5, 4], [3, 2])
        var rows = SequencePacker.Pack(new[] { 6, 5, 4, 3, 2 }, 10);
        Assert.That(rows, Is.EqualTo(new[] { new[] { 0, 2 }, new[] { 1, 3, 4 } }));
    }

    [Test]
    public void RowsAreOrderedByTheirFirstDocumentAndKeepInputOrderWithin()
    {
        var rows = SequencePacker.Pack(new[] { 2, 9, 3, 8, 1 }, 10);
        // 9 -> A (room 1), 8 -> B (room 2), 3 -> C (room 7), 2 -> B (full), 1 -> A (full)
        Assert.That(rows, Is.EqualTo(new[] { new[] { 0, 3 }, new[] { 1, 4 }, new[] { 2 } }));
    }

    /// <summary>
    /// Random lengths: each document placed once, rows within the capacity, the same result every call, and as a plain
    /// best-fit scan places them.
    /// </summary>
    [TestCase(1, 200, 64)]
    [TestCase(2, 3000, 2048)]
    [TestCase(3, 500, 7)]
    public void EveryDocumentIsPlacedOnceWithinTheCapacityDeterministically(int seed, int count, int capacity)
    {
        var random = new Random(seed);
        var lengths = Enumerable.Range(0, count).Select(_ => random.Next(1, capacity + 1)).ToArray();
        var rows = SequencePacker.Pack(lengths, capacity);
        Assert.That(rows.SelectMany(r => r).Order(), Is.EqualTo(Enumerable.Range(0, count)), "every document exactly once");
        Assert.That(rows.Select(r => r.Sum(d => lengths[d])).Max(), Is.LessThanOrEqualTo(capacity), "no row over the capacity");
        Assert.That(rows.All(r => r.SequenceEqual(r.Order())), Is.True, "input order within a row");
        Assert.That(rows.Select(r => r[0]), Is.Ordered.Ascending, "rows ordered by their first document");
        Assert.That(SequencePacker.Pack(lengths, capacity), Is.EqualTo(rows), "deterministic");
        Assert.That(rows, Is.EqualTo(ReferenceBestFitDecreasing(lengths, capacity)), "the same packing as a linear best-fit scan");
        long total = lengths.Sum(x => (long)x);
        long lowerBound = (total + capacity - 1) / capacity;
        Assert.That(rows.Length, Is.LessThanOrEqualTo(11.0 / 9 * lowerBound + 1), "within best-fit decreasing's bound (11/9 OPT + 6/9)");
    }

    [Test]
    public void DocumentsLongerThanARowOrEmptyAreRefusedByIndex()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => SequencePacker.Pack(new[] { 3, 11, 2 }, 10))!;
        Assert.That(e.Message, Does.Contain("Document 1 has 11 tokens").And.Contain("1 to 10"));
        Assert.Throws<ArgumentOutOfRangeException>(() => SequencePacker.Pack(new[] { 3, 0 }, 10));
        Assert.That(SequencePacker.Pack(Array.Empty<int>(), 10), Is.Empty);
        Assert.That(SequencePacker.Pack(new[] { 10, 10 }, 10), Is.EqualTo(new[] { new[] { 0 }, new[] { 1 } }), "full-length documents, one per row");
    }

    [Test]
    public void PaddingFractionPadsEachBatchToItsLongestRow()
    {
        // batches [10, 6] and [8, 8]: 36 slots, 32 tokens
        Assert.That(SequencePacker.PaddingFraction(new[] { 10, 6, 8, 8 }, 2), Is.EqualTo(4.0 / 36).Within(1e-12));
        Assert.That(SequencePacker.PaddingFraction(new[] { 5, 3, 4 }, 2), Is.EqualTo((2.0 + 0) / 14).Within(1e-12), "last batch of one row");
        Assert.That(SequencePacker.PaddingFraction(Array.Empty<int>(), 2), Is.EqualTo(0));
        Assert.That(SequencePacker.PaddingFraction(new[] { 10, 6, 8, 8 }, 2, new TokenBatcher(0, null, TruncationSide.Right, 4).PaddedLength),
            Is.EqualTo(8.0 / 40).Within(1e-12), "widths 12 and 8");
        Assert.That(SequencePacker.PaddingFraction(new[] { 10, 6, 8, 8 }, 2, new TokenBatcher(0, 12, TruncationSide.Right, 16).PaddedLength),
            Is.EqualTo(16.0 / 48).Within(1e-12),
            "rounded up to 16, capped at 12");
    }

    /// <summary>Best-fit decreasing by a linear scan over the open rows (lowest room, then lowest row index), rows ordered as the packer orders them.</summary>
    private static int[][] ReferenceBestFitDecreasing(int[] lengths, int capacity)
    {
        var rows = new List<List<int>>();
        var room = new List<int>();
        foreach (int doc in Enumerable.Range(0, lengths.Length).OrderByDescending(i => lengths[i]).ThenBy(i => i))
        {
            int best = -1;
            for (int r = 0; r < rows.Count; r++)
                if (room[r] >= lengths[doc] && (best < 0 || room[r] < room[best])) best = r;
            if (best < 0)
            {
                best = rows.Count;
                rows.Add(new List<int>());
                room.Add(capacity);
            }
            rows[best].Add(doc);
            room[best] -= lengths[doc];
        }
        return rows.Select(r => r.Order().ToArray()).OrderBy(r => r[0]).ToArray();
    }
}
