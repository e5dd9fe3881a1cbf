using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Root-mean-square norm. By default one fused <c>torch.rms_norm</c> kernel (statistics and scaling in float32, one
/// rounding to the input dtype); with <see cref="KernelOptions.FusedRmsNorm"/> off, HF's op-by-op numerics (normalise in float32,
/// round to the input dtype, then scale). The two agree exactly in float32 up to summation order.
/// </summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Scalar _eps;   // owned for the module's lifetime (see Scalars)
    private readonly bool _fused;

    /// <summary>Scale, ones at initialisation.</summary>
    public Parameter weight;

    public RmsNorm(long size, double eps, Device? device = null, ScalarType dtype = ScalarType.Float32, bool fused = true) : base(nameof(RmsNorm))
    {
        _eps = Scalars.Of(eps);
        _fused = fused;
        weight = new Parameter(torch.ones(size, dtype: dtype, device: device));
        RegisterComponents();
    }

    /// <summary>The epsilon, a <see cref="Scalar"/> owned by the module (alive as long as it).</summary>
    public Scalar Eps => _eps;

    /// <summary>Late init: ones.</summary>
    public void ResetParameters()
    {
        using var _ = torch.no_grad();
        weight.fill_(Scalars.OneF);
    }

    public override Tensor forward(Tensor x)
    {
        if (_fused && x.dtype == weight.dtype) return AtenScript.RmsNorm(x, weight, _eps);
        using var scope = torch.NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var normed = xf * xf.square().mean(new long[] { -1 }, keepdim: true).add(_eps, Scalars.One).rsqrt();
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
