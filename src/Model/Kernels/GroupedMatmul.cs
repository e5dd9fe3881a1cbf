using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Kernels;

/// <summary>
/// The one seam where expert rows meet expert weights: <c>y[rows of e] = x[rows of e] · w[e]ᵀ</c> for rows grouped by
/// expert. On CUDA with bf16 it is one <c>torch._grouped_mm</c> (<see cref="AtenScript.GroupedMm"/>), with device-side
/// offsets and no host sync. Elsewhere it is a plain per-expert matmul loop over host counts, the simple path the CPU
/// tests trust.
/// </summary>
internal static class GroupedMatmul
{
    /// <summary>Whether the grouped kernel is used for this input (bf16 on CUDA, rows of whole 16-byte multiples, as CUTLASS needs: a LoRA rank of
    /// 8k).</summary>
    public static bool UsesGroupedKernel(Tensor x, Tensor w) => UsesGroupedKernel(x.device_type, x.dtype, x.shape[^1], w);

    /// <summary>As <see cref="UsesGroupedKernel(Tensor, Tensor)"/> for rows of <paramref name="inFeatures"/> columns that do not exist yet.</summary>
    public static bool UsesGroupedKernel(DeviceType device, ScalarType dtype, long inFeatures, Tensor w) => device == DeviceType.CUDA
        && dtype == ScalarType.BFloat16 && w.dtype == ScalarType.BFloat16 && inFeatures % 8 == 0 && w.shape[1] % 8 == 0;

    /// <param name="x">[N,in] rows sorted by expert.</param>
    /// <param name="w">[E,out,in] stacked expert weights.</param>
    /// <param name="offsets">[E] int32 cumulative row ends (offsets[e] = rows of experts 0..e).</param>
    /// <returns>[N,out].</returns>
    public static Tensor Apply(Tensor x, Tensor w, Tensor offsets) => UsesGroupedKernel(x, w) ? AtenScript.GroupedMm(x, w, offsets) : Loop(x, w, offsets);

    /// <summary>The per-expert reference: one <c>linear</c> per non-empty group (reads the offsets on the host).</summary>
    internal static Tensor Loop(Tensor x, Tensor w, Tensor offsets)
    {
        using var scope = NewDisposeScope();
        var ends = offsets.to(ScalarType.Int64).cpu().data<long>().ToArray();  // host sync: fine on CPU
        var outs = new List<Tensor>(ends.Length);
        long start = 0;
        for (int e = 0; e < ends.Length; e++)
        {
            long count = ends[e] - start;
            if (count > 0) outs.Add(nn.functional.linear(x.narrow(0, start, count), w[e]));
            start = ends[e];
        }
        var y = outs.Count > 0 ? cat(outs, 0) : zeros(new[] { 0L, w.shape[1] }, dtype: x.dtype, device: x.device);
        return y.MoveToOuterDisposeScope();
    }
}
