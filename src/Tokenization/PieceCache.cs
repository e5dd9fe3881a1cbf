using System.Collections.Concurrent;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// A bounded, thread-safe cache from a pre-tokenised piece (e.g. <c>" hello"</c>) to its BPE ids, looked up by span
/// so that hits allocate nothing.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers' BPE has a word cache too, but every lookup takes one global <c>lock</c>, which is why
/// encoding on 16 threads was slower than on one. <see cref="ConcurrentDictionary{TKey,TValue}"/> reads take no lock,
/// so hits scale with cores; only misses (new words) reach the library's BPE.
/// </remarks>
internal sealed class PieceCache
{
    /// <summary>Longer pieces are not cached (rare, and they would crowd the cache).</summary>
    public const int MaxPieceLength = 64;

    private readonly ConcurrentDictionary<string, int[]> _map;
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly int _capacity;
    private int _count;

    /// <param name="capacity">Most entries kept; once full, new pieces are encoded but not added.</param>
    public PieceCache(int capacity)
    {
        _capacity = capacity;
        _map = new ConcurrentDictionary<string, int[]>(StringComparer.Ordinal);
        _lookup = _map.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Entries held now.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Looks a piece up without allocating.</summary>
    public bool TryGet(ReadOnlySpan<char> piece, out int[] ids) => _lookup.TryGetValue(piece, out ids!);

    /// <summary>Adds a piece unless it is too long or the cache is full.</summary>
    public void TryAdd(string piece, int[] ids)
    {
        if (piece.Length <= MaxPieceLength && Volatile.Read(ref _count) < _capacity && _map.TryAdd(piece, ids))
        {
            Interlocked.Increment(ref _count);
        }
    }
}
