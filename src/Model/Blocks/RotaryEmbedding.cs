using static TorchSharp.torch;

using Microsoft.ML.Qwen3Moe.Kernels;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Rotary position embeddings, "half" style (the two halves of head_dim rotate together), computed per forward in
/// float32 exactly as HF does (<c>inv_freq = theta^(-2i/D)</c>); no buffers, so module-wide dtype casts cannot degrade them.
/// </summary>
internal sealed class RotaryEmbedding
{
    private readonly double _theta;
    private readonly int _headDim;

    public RotaryEmbedding(int headDim, double theta)
    {
        _headDim = headDim;
        _theta = theta;
    }

    /// <summary>Cos and sin tables for the given positions, in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) Compute(Tensor positionIds, ScalarType dtype) // [B,S] -> [B,S,D] each
    {
        using var scope = NewDisposeScope();
        using var headDim = Scalars.Of((long)_headDim);
        using var two = Scalars.Of(2L);
        using var theta = tensor(_theta);
        var exponent = arange(Scalars.Zero, headDim, two, dtype: ScalarType.Int64, device: positionIds.device).to(ScalarType.Float32).div(headDim);
        var invFreq = pow(theta, exponent).reciprocal();                             // [D/2]: 1 / theta^(2i/D)
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq;     // [B,S,D/2]
        var emb = cat(new[] { freqs, freqs }, -1);                                   // [B,S,D]
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Rotates <paramref name="q"/> and <paramref name="k"/> [B,S,heads,D] by the tables [B,S,D]:
    /// <c>x·cos + rotate_half(x)·sin</c>, computed as <c>addcmul(x·cos, roll(x, D/2), sin with its first half negated)</c>,
    /// three kernels per tensor instead of five (the sign flip touches only the small table).
    /// </summary>
    public static (Tensor Q, Tensor K) Apply(Tensor q, Tensor k, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = sin.shape[^1] / 2;
        var (c, s) = Broadcast(cos, sin);
        Tensor Rotate(Tensor x) => (x * c).addcmul_(x.roll(half, -1), s, Scalars.One);
        return (Rotate(q).MoveToOuterDisposeScope(), Rotate(k).MoveToOuterDisposeScope());
    }

    /// <summary>The tables [B,S,D] as <see cref="Apply"/> multiplies them: [B,S,1,D] (over the heads), the sines' first half negated.</summary>
    public static (Tensor Cos, Tensor SignedSin) Broadcast(Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = sin.shape[^1] / 2;
        var signed = cat(new[] { -sin.narrow(-1, 0, half), sin.narrow(-1, half, half) }, -1).unsqueeze(2);   // [B,S,1,D]
        return (cos.unsqueeze(2).MoveToOuterDisposeScope(), signed.MoveToOuterDisposeScope());
    }
}
