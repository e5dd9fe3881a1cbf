using System.Text;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// Byte-level BPE for long pieces, in O(n log n): a priority queue of adjacent pairs by (merge rank, position), as
/// Hugging Face's BPE merges.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers' BPE gives the same ids but its time grows much faster than the length of a piece: one
/// piece of 1 MB (a line of '!' or of one letter) took about a minute. Pieces that long are rare, so
/// <see cref="Qwen3Tokenizer"/> sends pieces up to <see cref="MinLength"/> characters to the library and longer ones
/// here.
/// </remarks>
internal sealed class LongPieceBpe
{
    /// <summary>Pieces with at least this many characters are merged here.</summary>
    public const int MinLength = 256;

    private readonly int[] _byteIds = new int[256];
    private readonly Dictionary<long, (int Rank, int Id)> _merges;

    /// <param name="vocabulary">Byte-level vocabulary.</param>
    /// <param name="merges">Merges in rank order ("left right"), already validated against the vocabulary.</param>
    /// <param name="source">The file, for error messages.</param>
    /// <exception cref="InvalidDataException">A byte has no token of its own.</exception>
    public LongPieceBpe(IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<string> merges, string source)
    {
        for (int b = 0; b < 256; b++)
        {
            string token = ByteLevelAlphabet.ToChar((byte)b).ToString();
            _byteIds[b] = vocabulary.TryGetValue(token, out int id)
                ? id
                : throw new InvalidDataException($"{source}: the vocabulary lacks '{token}', the token of byte 0x{b:X2}; a byte-level BPE vocabulary has " +
                    $"all 256.");
        }

        _merges = new Dictionary<long, (int, int)>(merges.Count, MixedLongComparer.Instance);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            string merge = merges[rank];
            int space = merge.IndexOf(' ');
            if (vocabulary.TryGetValue(merge[..space], out int left) && vocabulary.TryGetValue(merge[(space + 1)..], out int right) &&
                vocabulary.TryGetValue(string.Concat(merge.AsSpan(0, space), merge.AsSpan(space + 1)), out int merged))
            {
                _merges.TryAdd(Key(left, right), (rank, merged));
            }
        }
    }

    /// <summary>Appends the ids of one pre-tokenised piece.</summary>
    public void Encode(ReadOnlySpan<char> piece, IdBuffer ids)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(piece.ToArray());
        int n = bytes.Length;
        var symbols = new int[n];
        var next = new int[n]; // index of the next live symbol, n at the end
        var prev = new int[n]; // index of the previous live symbol, -1 at the start
        for (int i = 0; i < n; i++)
        {
            symbols[i] = _byteIds[bytes[i]];
            next[i] = i + 1;
            prev[i] = i - 1;
        }

        // Pairs keyed by rank, then position (leftmost first), packed in one long. A popped entry is stale when
        // the symbols at its position changed; since ranks are unique, "the pair there still has this rank" is the test.
        var heap = new MinHeap(n);
        for (int i = 0; i + 1 < n; i++)
        {
            if (TryGetMerge(symbols[i], symbols[i + 1], out int rank, out _))
            {
                heap.Add(Entry(rank, i));
            }
        }

        heap.Build();
        while (heap.TryPop(out long entry))
        {
            int left = (int)(uint)entry;
            int right = next[left];
            if (symbols[left] < 0 || right >= n ||
                !TryGetMerge(symbols[left], symbols[right], out int rank, out int merged) || rank != (int)(entry >> 32))
            {
                continue;
            }

            symbols[left] = merged;
            symbols[right] = -1;
            next[left] = next[right];
            if (next[left] < n)
            {
                prev[next[left]] = left;
                if (TryGetMerge(merged, symbols[next[left]], out int nextRank, out _))
                {
                    heap.Push(Entry(nextRank, left));
                }
            }

            if (prev[left] >= 0 && TryGetMerge(symbols[prev[left]], merged, out int prevRank, out _))
            {
                heap.Push(Entry(prevRank, prev[left]));
            }
        }

        for (int i = 0; i < n; i = next[i])
        {
            ids.Add(symbols[i]);
        }
    }

    private bool TryGetMerge(int left, int right, out int rank, out int merged)
    {
        bool found = _merges.TryGetValue(Key(left, right), out var merge);
        (rank, merged) = merge;
        return found;
    }

    private static long Entry(int rank, int position) => ((long)rank << 32) | (uint)position;

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>A binary min-heap of longs (8 bytes an entry, half of <see cref="PriorityQueue{TElement,TPriority}"/>'s).</summary>
    private sealed class MinHeap(int capacity)
    {
        private long[] _items = new long[Math.Max(capacity, 4)];
        private int _count;

        /// <summary>Appends without ordering; call <see cref="Build"/> before popping.</summary>
        public void Add(long item)
        {
            if (_count == _items.Length)
            {
                Array.Resize(ref _items, _items.Length * 2);
            }

            _items[_count++] = item;
        }

        public void Build()
        {
            for (int i = (_count / 2) - 1; i >= 0; i--)
            {
                SiftDown(i);
            }
        }

        public void Push(long item)
        {
            Add(item);
            int i = _count - 1;
            while (i > 0)
            {
                int parent = (i - 1) / 2;
                if (_items[parent] <= item)
                {
                    break;
                }

                _items[i] = _items[parent];
                i = parent;
            }

            _items[i] = item;
        }

        public bool TryPop(out long item)
        {
            if (_count == 0)
            {
                item = 0;
                return false;
            }

            item = _items[0];
            _items[0] = _items[--_count];
            SiftDown(0);
            return true;
        }

        private void SiftDown(int i)
        {
            long item = _items[i];
            while (true)
            {
                int child = (2 * i) + 1;
                if (child >= _count)
                {
                    break;
                }

                if (child + 1 < _count && _items[child + 1] < _items[child])
                {
                    child++;
                }

                if (_items[child] >= item)
                {
                    break;
                }

                _items[i] = _items[child];
                i = child;
            }

            _items[i] = item;
        }
    }

    /// <summary>
    /// long's own hash is the XOR of its halves, so pairs of ids (left, right) with the same XOR collide; a
    /// multiplicative mix spreads them.
    /// </summary>
    private sealed class MixedLongComparer : IEqualityComparer<long>
    {
        public static MixedLongComparer Instance { get; } = new();

        public bool Equals(long x, long y) => x == y;

        public int GetHashCode(long value) => (int)((ulong)value * 0x9E3779B97F4A7C15UL >> 32);
    }
}
