using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>
/// Global L2 gradient norm and clipping with multi-tensor kernels (<c>torch._foreach_norm</c>, <c>torch._foreach_mul_</c>
/// through TorchScript) and no host read: the norm stays a device tensor, and the clip factor
/// <c>min(1, maxNorm / (norm + 1e-6))</c> is applied on the device (PyTorch's <c>clip_grad_norm_</c> rule).
/// </summary>
internal static class GradientClipping
{
    /// <summary>
    /// The global L2 norm of the gradients of <paramref name="parameters"/> (float32 scalar on the first parameter's
    /// device; 0 without gradients); when <paramref name="maxNorm"/> is finite, scales the gradients in place so that
    /// the norm is at most <paramref name="maxNorm"/>.
    /// </summary>
    public static Tensor ClipByGlobalNorm(IReadOnlyList<Parameter> parameters, double maxNorm)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var groups = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).GroupBy(g => (g.device.ToString(), g.dtype)).Select(g =>
            g.ToArray()).ToArray();
        var device = parameters.Count > 0 ? parameters[0].device : CPU;
        var total = zeros(Array.Empty<long>(), dtype: ScalarType.Float32, device: device);
        foreach (var g in groups) total = total.Plus(AtenScript.SumOfSquares(g).to(device));
        var norm = total.sqrt();
        if (double.IsFinite(maxNorm))
        {
            using var max = Scalars.Of(maxNorm);
            using var tiny = Scalars.Of(1e-6);
            var factor = norm.add(tiny, Scalars.One).reciprocal().mul(max).clamp_max(Scalars.OneF);   // maxNorm / (norm + 1e-6), at most 1
            foreach (var g in groups) AtenScript.Scale(g, factor.to(g[0].device));
        }
        return norm.MoveToOuterDisposeScope();
    }
}
