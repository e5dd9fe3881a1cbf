using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Kernels;

/// <summary>
/// ATen operators that TorchSharp 0.107 does not bind, reached through one TorchScript compilation unit
/// (<c>torch.jit.compile</c>; each call costs about 20 µs of host time, as much as one ordinary op). Every function here
/// runs on CPU and CUDA; the tests check each against plain TorchSharp ops on the CPU.
/// </summary>
internal static class AtenScript
{
    private static readonly Lazy<jit.CompilationUnit> Unit = new(() => jit.compile(
        "def grouped_mm(a, b, offs):\n" +
        "    return torch._grouped_mm(a, b.transpose(-2, -1), offs=offs)\n" +
        "def rms_norm(x, weight, eps: float):\n" +
        "    return torch.rms_norm(x, [x.size(-1)], weight, eps)\n" +
        "def causal_gqa_attention(q, k, v):\n" +
        "    return torch.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)\n" +
        "def unmasked_gqa_attention(q, k, v):\n" +
        "    return torch.scaled_dot_product_attention(q, k, v, enable_gqa=True)\n" +
        "def causal_flash_attention(q, k, v):\n" +
        "    return torch._scaled_dot_product_flash_attention(q, k, v, 0.0, True)[0]\n" +
        "def masked_gqa_attention(q, k, v, mask):\n" +
        "    return torch.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)\n" +
        "def logit_gradient(logits, lse, upstream):\n" +
        "    return (torch.exp(logits.float() - lse) * upstream).type_as(logits)\n" +
        "def sum_of_squares(grads: List[Tensor]) -> Tensor:\n" +
        "    norms = torch._foreach_norm(grads, 2.0)\n" +
        "    return torch.stack([n.float() for n in norms]).square().sum()\n" +
        "def scale_(grads: List[Tensor], factor: Tensor) -> Tensor:\n" +
        "    torch._foreach_mul_(grads, factor)\n" +
        "    return factor\n" +
        "def adamw(params: List[Tensor], grads: List[Tensor], exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor], steps: List[Tensor],\n" +
        "          lr: float, beta1: float, beta2: float, weight_decay: float, eps: float) -> Tensor:\n" +
        "    torch._foreach_add_(steps, 1.0)\n" +
        "    empty: List[Tensor] = []\n" +
        "    torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, empty, steps, lr=lr, beta1=beta1, beta2=beta2,\n" +
        "                        weight_decay=weight_decay, eps=eps, amsgrad=False, maximize=False)\n" +
        "    return steps[0]\n"));

    /// <summary>
    /// <c>torch._grouped_mm(a, b.mT, offs)</c>: rows of <paramref name="a"/> [N,in] grouped by the int32 cumulative
    /// ends <paramref name="offsets"/> [E], times <paramref name="b"/> [E,out,in] transposed. One CUTLASS kernel on
    /// CUDA (bf16, SM90); a loop of mm elsewhere.
    /// </summary>
    public static Tensor GroupedMm(Tensor a, Tensor b, Tensor offsets) => Unit.Value.invoke<Tensor>("grouped_mm", a, b, offsets);

    /// <summary><c>torch.rms_norm</c> over the last dimension: one fused kernel forward and one backward on CUDA (statistics in float32).</summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, Scalar eps) => Unit.Value.invoke<Tensor>("rms_norm", x, weight, eps);

    /// <inheritdoc cref="RmsNorm(Tensor, Tensor, Scalar)"/>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        using var owned = Scalars.Of(eps);   // alive until the call returns (see Scalars)
        return RmsNorm(x, weight, owned);
    }

    /// <summary>
    /// <c>exp(logits − lse) · upstream</c> in float32, rounded once to the dtype of <paramref name="logits"/> [c,V]
    /// (<paramref name="lse"/> and <paramref name="upstream"/> float32 [c,1]): the softmax part of a cross-entropy
    /// gradient. On CUDA TorchScript's fuser (NNC) runs it as one kernel (read the logits, write the gradient) once the
    /// profiling executor has seen it twice; on the CPU it runs op by op.
    /// </summary>
    public static Tensor LogitGradient(Tensor logits, Tensor lse, Tensor upstream) => Unit.Value.invoke<Tensor>("logit_gradient", logits, lse, upstream);

    /// <summary>
    /// Σ over <paramref name="tensors"/> (one device and dtype) of their squared L2 norms, float32 scalar
    /// (<c>_foreach_norm</c>: one launch per list).
    /// </summary>
    public static Tensor SumOfSquares(Tensor[] tensors) => Unit.Value.invoke<Tensor>("sum_of_squares", new object[] { tensors });

    /// <summary>
    /// Multiplies every tensor of <paramref name="tensors"/> (one device) in place by the scalar tensor
    /// <paramref name="factor"/> (<c>_foreach_mul_</c>).
    /// </summary>
    public static void Scale(Tensor[] tensors, Tensor factor) => Unit.Value.invoke<Tensor>("scale_", tensors, factor);

    /// <summary>
    /// One AdamW step for parameters of one device and dtype (<c>torch._fused_adamw_</c>: a single kernel), after adding 1
    /// to the float32 step counts; moments and parameters are updated in place.
    /// </summary>
    public static void FusedAdamW(Tensor[] parameters, Tensor[] grads, Tensor[] expAvgs, Tensor[] expAvgSqs, Tensor[] steps,
        Scalar lr, Scalar beta1, Scalar beta2, Scalar weightDecay, Scalar eps) =>
        Unit.Value.invoke<Tensor>("adamw", parameters, grads, expAvgs, expAvgSqs, steps, lr, beta1, beta2, weightDecay, eps);

    /// <summary>
    /// <c>scaled_dot_product_attention(q, k, v, enable_gqa=True)</c> with q [B,nH,S,D] and k/v [B,nKV,S,D]: the key/value
    /// heads are shared by groups of query heads inside the kernel, without materialising expanded K/V (TorchSharp's
    /// binding has no GQA flag). When <paramref name="mask"/> is null: causal, or (<paramref name="causal"/> false, a decode
    /// step over a cache) every key; else the boolean mask (true = attend).
    /// </summary>
    public static Tensor GqaAttention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal = true) => mask is null
        ? Unit.Value.invoke<Tensor>(causal ? "causal_gqa_attention" : "unmasked_gqa_attention", q, k, v)
        : Unit.Value.invoke<Tensor>("masked_gqa_attention", q, k, v, mask);

    /// <summary>
    /// Causal FlashAttention-2 (<c>torch._scaled_dot_product_flash_attention</c>) with q [B,nH,S,D] and k/v [B,nKV,S,D]
    /// (nKV dividing nH: the kernel shares K/V heads itself): SDPA's flash backend called directly, so no other backend is
    /// chosen, and no plan is built per sequence length. CUDA only; see <see cref="FlashAttentionApplies"/>.
    /// </summary>
    public static Tensor CausalFlashAttention(Tensor q, Tensor k, Tensor v) => Unit.Value.invoke<Tensor>("causal_flash_attention", q, k, v);

    /// <summary>
    /// Whether <see cref="CausalFlashAttention"/> takes these inputs: CUDA, bf16 or fp16, as many keys as queries (flash
    /// aligns a causal mask differently from SDPA when they differ), and a head size flash supports (a multiple of 8, at
    /// most 256).
    /// </summary>
    public static bool FlashAttentionApplies(DeviceType device, ScalarType dtype, long queries, long keys, long headDim) =>
        device == DeviceType.CUDA && (dtype is ScalarType.BFloat16 or ScalarType.Float16) && queries == keys && headDim % 8 == 0 && headDim <= 256;
}
