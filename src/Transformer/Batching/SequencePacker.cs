namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>
/// Packs documents into rows of at most a fixed number of tokens (sequence packing for training), by best-fit decreasing
/// as HF TRL's <c>"bfd"</c>: documents from the longest to the shortest (ties by index), each into the open row with
/// the least room that still fits it, else into a new row. Every document is placed whole, exactly once.
/// </summary>
/// <remarks>
/// The result depends only on the lengths and the capacity (no randomness, ties broken by index), so a run that packs
/// once and then shuffles the rows per epoch from (seed, epoch) reads the same rows after a resume. Within a row the
/// documents keep their input order, and rows are ordered by their first document, so without shuffling the rows
/// follow the input roughly in order. O(n log n) for n documents.
/// </remarks>
internal static class SequencePacker
{
    /// <summary>The rows: each the indices of its documents, ascending; the rows ordered by their first index.</summary>
    /// <param name="lengths">Tokens of each document (each in [1, <paramref name="capacity"/>]).</param>
    /// <param name="capacity">Most tokens per row.</param>
    /// <exception cref="ArgumentOutOfRangeException">A document is empty or longer than <paramref name="capacity"/> (the message names it).</exception>
    public static int[][] Pack(IReadOnlyList<int> lengths, int capacity)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        for (int i = 0; i < lengths.Count; i++)
            if (lengths[i] < 1 || lengths[i] > capacity)
                throw new ArgumentOutOfRangeException(nameof(lengths), lengths[i],
                    $"Document {i} has {lengths[i]} tokens; a packed row holds documents of 1 to {capacity} tokens (truncate or skip longer ones first).");
        var order = Enumerable.Range(0, lengths.Count).OrderByDescending(i => lengths[i]).ThenBy(i => i).ToArray();
        var rows = new List<List<int>>();
        var room = new List<int>();
        var withRoom = new PriorityQueue<int, int>?[capacity + 1]; // per room left: the open rows, lowest index first
        var rooms = new RoomIndex(capacity + 1);
        foreach (int doc in order)
        {
            int length = lengths[doc];
            int best = rooms.FirstAtLeast(length);
            int row;
            if (best < 0)
            {
                row = rows.Count;
                rows.Add(new List<int>());
                room.Add(capacity);
            }
            else
            {
                row = withRoom[best]!.Dequeue();
                rooms.Add(best, -1);
            }
            rows[row].Add(doc);
            room[row] -= length;
            if (room[row] > 0)
            {
                (withRoom[room[row]] ??= new PriorityQueue<int, int>()).Enqueue(row, row);
                rooms.Add(room[row], +1);
            }
        }
        return rows.Select(r => r.Order().ToArray()).OrderBy(r => r[0]).ToArray();
    }

    /// <summary>
    /// The fraction of a run's token slots that are padding when rows of <paramref name="rowLengths"/> (in batch order) are
    /// grouped <paramref name="batchSize"/> at a time and each batch is padded to <paramref name="paddedLength"/> of its
    /// longest row (e.g. <see cref="CausalLMBatchBuilder.PaddedLength"/>; default: the longest row itself).
    /// </summary>
    public static double PaddingFraction(IEnumerable<int> rowLengths, int batchSize, Func<int, int>? paddedLength = null)
    {
        long slots = 0, tokens = 0;
        foreach (var batch in rowLengths.Chunk(batchSize))
        {
            slots += (long)batch.Length * (paddedLength ?? (n => n))(batch.Max());
            tokens += batch.Sum(x => (long)x);
        }
        return slots == 0 ? 0 : (double)(slots - tokens) / slots;
    }

    /// <summary>Counts of open rows per room left (a segment tree), answering "the least room of at least n" in O(log capacity).</summary>
    private sealed class RoomIndex
    {
        private readonly int _leaves;
        private readonly int[] _count;

        public RoomIndex(int rooms)
        {
            _leaves = 1;
            while (_leaves < rooms) _leaves <<= 1;
            _count = new int[2 * _leaves];
        }

        public void Add(int room, int delta)
        {
            for (int node = room + _leaves; node > 0; node >>= 1) _count[node] += delta;
        }

        /// <summary>The least room ≥ <paramref name="least"/> that some open row has, or -1.</summary>
        public int FirstAtLeast(int least) => First(1, 0, _leaves, least);

        private int First(int node, int from, int to, int least)
        {
            if (to <= least || _count[node] == 0) return -1;
            if (to - from == 1) return from;
            int middle = (from + to) / 2;
            int left = First(2 * node, from, middle, least);
            return left >= 0 ? left : First(2 * node + 1, middle, to, least);
        }
    }
}
