namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>A growable, reusable list of token ids (one per thread), so encoding allocates only its result.</summary>
internal sealed class IdBuffer
{
    /// <summary>Buffers that grew past this many ids are dropped after use rather than kept per thread.</summary>
    public const int MaxRetained = 1 << 20;

    private int[] _items = new int[256];

    /// <summary>Ids written so far.</summary>
    public int Count { get; private set; }

    /// <summary>The ids written so far.</summary>
    public ReadOnlySpan<int> Span => _items.AsSpan(0, Count);

    /// <summary>Whether the buffer grew too large to keep.</summary>
    public bool IsOversized => _items.Length > MaxRetained;

    /// <summary>Empties the buffer.</summary>
    public void Clear() => Count = 0;

    /// <summary>Appends one id.</summary>
    public void Add(int id)
    {
        if (Count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
        }

        _items[Count++] = id;
    }

    /// <summary>Appends several ids.</summary>
    public void AddRange(ReadOnlySpan<int> ids)
    {
        if (Count + ids.Length > _items.Length)
        {
            Array.Resize(ref _items, Math.Max(_items.Length * 2, Count + ids.Length));
        }

        ids.CopyTo(_items.AsSpan(Count));
        Count += ids.Length;
    }
}
