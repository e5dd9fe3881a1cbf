using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Rotary position embeddings, "half" style (the two halves of head_dim rotate together), computed per forward in
/// float32 exactly as HF does (<c>inv_freq = theta^(-2i/D)</c>); no buffers, so module-wide dtype casts cannot degrade them.
/// </summary>
internal sealed class RotaryEmbedding
{
    private readonly double _theta;
    private readonly int _headDim;
    private readonly int _maxPositions;

    public RotaryEmbedding(int headDim, double theta, int maxPositions)
    {
        _headDim = headDim;
        _theta = theta;
        _maxPositions = maxPositions;
    }

    /// <summary>Maximum position id plus one.</summary>
    public int MaxPositions => _maxPositions;

    /// <summary>Cos and sin tables for the given positions, in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) Compute(Tensor positionIds, ScalarType dtype) // [B,S] -> [B,S,D] each
    {
        using var scope = NewDisposeScope();
        var exponent = arange(0, _headDim, 2, dtype: ScalarType.Int64, device: positionIds.device).to(ScalarType.Float32) / _headDim;
        var invFreq = 1.0 / pow(_theta, exponent);                                   // [D/2]
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq;     // [B,S,D/2]
        var emb = cat(new[] { freqs, freqs }, -1);                                   // [B,S,D]
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>Rotates <paramref name="x"/> [B,heads,S,D] by the tables [B,S,D].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var c = cos.unsqueeze(1);
        var s = sin.unsqueeze(1);
        var halves = x.chunk(2, -1);
        var rotated = cat(new[] { -halves[1], halves[0] }, -1);
        return (x * c + rotated * s).MoveToOuterDisposeScope();
    }
}
