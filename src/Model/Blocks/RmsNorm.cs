using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Root-mean-square norm. By default one fused <c>torch.rms_norm</c> kernel (statistics and scaling in float32, one
/// rounding to the input dtype); with <see cref="UseFusedKernel"/> off, HF's op-by-op numerics (normalise in float32,
/// round to the input dtype, then scale). The two agree exactly in float32 up to summation order.
/// </summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Scalar _eps;   // owned for the module's lifetime (see Scalars)

    /// <summary>Scale, ones at initialisation.</summary>
    public Parameter weight;

    public RmsNorm(long size, double eps, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(RmsNorm))
    {
        _eps = Scalars.Of(eps);
        weight = new Parameter(torch.ones(size, dtype: dtype, device: device));
        RegisterComponents();
    }

    /// <summary>Whether every instance uses the fused kernel (process-wide; benchmarks switch it off to compare). Default true.</summary>
    internal static bool UseFusedKernel { get; set; } = true;

    /// <summary>Late init: ones.</summary>
    public void ResetParameters()
    {
        using var _ = torch.no_grad();
        weight.fill_(Scalars.OneF);
    }

    public override Tensor forward(Tensor x)
    {
        if (UseFusedKernel && x.dtype == weight.dtype) return AtenScript.RmsNorm(x, weight, _eps);
        using var scope = torch.NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var normed = xf * xf.square().mean(new long[] { -1 }, keepdim: true).add(_eps, Scalars.One).rsqrt();
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
