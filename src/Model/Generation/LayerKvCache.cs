using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>
/// The preallocated keys and values of one attention layer for a batch of sequences: [B, kvHeads, capacity, headDim] each,
/// in the model's dtype and on its device. Every row writes at the same column (<see cref="KvCache.Length"/>): prompts of
/// different lengths are left padded, and the padding is masked by the owning <see cref="KvCache"/>.
/// </summary>
internal sealed class LayerKvCache : IDisposable
{
    private readonly KvCache _owner;
    private readonly Tensor _keys;
    private readonly Tensor _values;

    public LayerKvCache(KvCache owner, long batch, long kvHeads, long capacity, long headDim, Device device, ScalarType dtype)
    {
        _owner = owner;
        _keys = zeros(new[] { batch, kvHeads, capacity, headDim }, dtype: dtype, device: device).DetachFromDisposeScope();
        _values = zeros(new[] { batch, kvHeads, capacity, headDim }, dtype: dtype, device: device).DetachFromDisposeScope();
    }

    /// <summary>Bytes held by this layer's keys and values.</summary>
    public long Bytes => 2 * _keys.numel() * _keys.element_size();

    /// <summary>
    /// Writes the new keys and values [B,nKV,S,D] after the cached ones and returns views of all of them [B,nKV,T,D]
    /// (T = cached + S), and whether attention among them is plain causal (true only when the cache was empty).
    /// </summary>
    /// <exception cref="InvalidOperationException">The cache is full.</exception>
    public (Tensor Keys, Tensor Values, bool Causal) Append(Tensor keys, Tensor values)
    {
        var (_, _, past) = Reserve(keys.shape[0], keys.shape[2]);
        long s = keys.shape[2];
        _keys.narrow(2, past, s).copy_(keys);
        _values.narrow(2, past, s).copy_(values);
        return (_keys.narrow(2, 0, past + s), _values.narrow(2, 0, past + s), past == 0);
    }

    /// <summary>
    /// The whole buffers [B,nKV,capacity,D] and the column where <paramref name="newTokens"/> new tokens of
    /// <paramref name="rows"/> rows go (the owner's length), for a caller that writes them itself (the scripted decode step).
    /// </summary>
    /// <exception cref="InvalidOperationException">The new tokens do not fit.</exception>
    /// <exception cref="ArgumentException">The cache was made for another number of rows.</exception>
    public (Tensor Keys, Tensor Values, long Past) Reserve(long rows, long newTokens)
    {
        long past = _owner.Length;
        if (past + newTokens > _keys.shape[2])
            throw new InvalidOperationException($"The KV cache holds {_keys.shape[2]} positions; {past} are used and {newTokens} more do not fit.");
        if (rows != _keys.shape[0])
            throw new ArgumentException($"The KV cache was made for {_keys.shape[0]} rows; the batch has {rows}.", nameof(rows));
        return (_keys, _values, past);
    }

    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
