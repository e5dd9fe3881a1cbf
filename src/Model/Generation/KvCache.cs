using System.Globalization;
using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Kernels;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>
/// The key/value cache of one pipeline stage for one batch of sequences: a preallocated <see cref="LayerKvCache"/> per
/// local decoder layer (model dtype, stage device), the rotary tables of every position it can hold, and, when the
/// prompts were left padded, which cached positions are real tokens. Passed to the stage's forward, which appends the new
/// tokens' keys and values and advances <see cref="Length"/>. Holds device memory: dispose it.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Dictionary<int, LayerKvCache> _layers = new();
    private readonly Tensor _cos, _sin;     // [capacity, D]
    private Tensor? _keyMask;                // [B, capacity] bool, null when no row is padded
    private bool _disposed;

    /// <summary>Allocates the cache of <paramref name="stage"/> for <paramref name="batchSize"/> rows of up to <paramref name="capacity"/> tokens.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A non-positive batch size or capacity.</exception>
    public KvCache(Qwen3MoeForCausalLM stage, int batchSize, int capacity)
    {
        ArgumentNullException.ThrowIfNull(stage);
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "The batch size must be positive.");
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "The capacity must be positive.");
        var layer = stage.Parameters.Model.Layer;
        var device = stage.Device;
        var dtype = stage.DType;
        BatchSize = batchSize;
        Capacity = capacity;
        foreach (var l in stage.Model.Layers)
            _layers[l.Index] = new LayerKvCache(this, batchSize, layer.NumKeyValueHeads, capacity, layer.HeadDim, device, dtype);
        using var scope = NewDisposeScope();
        using var end = Scalars.Of((long)capacity);
        var positions = arange(end, dtype: ScalarType.Int64, device: device).unsqueeze(0);            // [1,C]
        var (cos, sin) = new RotaryEmbedding(layer.HeadDim, stage.Parameters.Model.RopeBase).Compute(positions, dtype);
        _cos = cos.squeeze(0).DetachFromDisposeScope();                                                // [C,D], owned by the cache
        _sin = sin.squeeze(0).DetachFromDisposeScope();
    }

    /// <summary>Rows of the batch.</summary>
    public int BatchSize { get; }

    /// <summary>Positions each row can hold (prompt width plus new tokens).</summary>
    public int Capacity { get; }

    /// <summary>Positions written so far (the same for every row: shorter prompts are left padded).</summary>
    public long Length { get; private set; }

    /// <summary>Device bytes held by the keys and values of all local layers.</summary>
    public long Bytes => _layers.Values.Sum(l => l.Bytes);

    /// <summary>The device of the stage (and of the cache).</summary>
    public Device Device => _cos.device;

    internal LayerKvCache? this[int layerIndex] => _layers.GetValueOrDefault(layerIndex);

    /// <summary>
    /// Marks which of the first positions are real tokens ([B,P], nonzero = real; left padding is 0): padded keys are
    /// never attended to. Positions after P (generated tokens) are real.
    /// </summary>
    internal void SetPromptMask(Tensor promptMask)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _keyMask?.Dispose();
        _keyMask = ones(new long[] { BatchSize, Capacity }, dtype: ScalarType.Bool, device: _cos.device).DetachFromDisposeScope();
        using var scope = NewDisposeScope();
        _keyMask.narrow(1, 0, promptMask.shape[1]).copy_(promptMask.to(ScalarType.Bool));
    }

    /// <summary>Cos and sin [B,S,D] of <paramref name="positions"/> [B,S] (each in [0, capacity)), looked up in the precomputed tables.</summary>
    /// <exception cref="InvalidOperationException">The S new tokens do not fit in the cache.</exception>
    internal (Tensor Cos, Tensor Sin) Rotary(Tensor positions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Length + positions.shape[1] > Capacity)
            throw new InvalidOperationException($"The KV cache holds {Capacity} positions; {Length} are used and {positions.shape[1]} more do not fit.");
        var flat = positions.reshape(-1);
        long b = positions.shape[0], s = positions.shape[1], d = _cos.shape[1];
        return (_cos.index_select(0, flat).view(b, s, d), _sin.index_select(0, flat).view(b, s, d));
    }

    /// <summary>
    /// The attention mask [B or 1,1,S,T] for S new tokens after <see cref="Length"/> cached ones (T = Length + S): key j is
    /// visible to new token i when j ≤ Length + i and j is a real token; a token always sees itself. Null when no row is
    /// padded and the step is a plain prefill (causal) or a one-token decode (every key).
    /// </summary>
    internal Tensor? AttentionMask(long s)
    {
        long past = Length, t = past + s;
        if (_keyMask is null && (past == 0 || s == 1)) return null;
        using var scope = NewDisposeScope();
        var device = _cos.device;
        var causal = ones(s, t, dtype: ScalarType.Bool, device: device).tril(past);                        // [S,T]
        if (_keyMask is null) return causal.view(1, 1, s, t).MoveToOuterDisposeScope();
        var self = eye(s, t, dtype: ScalarType.Bool, device: device).roll(past, 1);                       // j == past + i
        var keys = _keyMask.narrow(1, 0, t).view(BatchSize, 1, 1, t);                                      // [B,1,1,T]
        return causal.logical_and(keys).logical_or(self).MoveToOuterDisposeScope();                         // [B,1,S,T]
    }

    internal void Advance(long s)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Length += s;
    }

    /// <summary>Frees the device memory.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var l in _layers.Values) l.Dispose();
        _cos.Dispose();
        _sin.Dispose();
        _keyMask?.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"KvCache({_layers.Count} layers, {BatchSize} x {Length}/{Capacity}, {Bytes} bytes)");
}
