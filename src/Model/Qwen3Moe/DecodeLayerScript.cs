using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.Kernels;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// One decoder layer's decode step over a KV cache as one TorchScript call (<see cref="KernelOptions.ScriptedDecode"/>):
/// input norm, q/k/v projections, q/k RMSNorm, RoPE, the new keys/values written into the preallocated cache at the step's
/// column, SDPA over the cache (GQA inside the kernel), o_proj and residual, post-attention norm, then the router and the
/// experts (or the dense SwiGLU) and the second residual. The ops and their order are the module path's
/// (<see cref="Qwen3MoeLayer.Forward"/> without statistics, experts combined as <see cref="ExpertPermutation.GatherBmm"/>); only
/// the host cost differs: the interpreter issues the layer's ops without TorchSharp's per-op marshalling (on an H200, 1.9
/// instead of 2.4 ms of host time per layer at batch 1; README, Generation). The weights go in as they are (no copies). The experts
/// of a few token–expert pairs (<see cref="KernelOptions.DecodeGatherPairs"/>) gather the picked experts' stacked weights
/// and use <c>bmm</c>; more pairs take the sorted grouped-matmul path of <see cref="GroupedExperts"/>.
/// </summary>
internal static class DecodeLayerScript
{
    // torch.jit.compile has no Python resolver: dtypes are the methods float()/int() or the ScalarType of a tensor.
    private const string Source = """
        def _norm(x, w, eps: float, fused: bool):
            if fused and x.dtype == w.dtype:
                return torch.rms_norm(x, [x.size(-1)], w, eps)
            xf = x.float()
            normed = xf * xf.square().mean([-1], keepdim=True).add(eps).rsqrt()
            return w * normed.to(x.dtype)

        def _rotate(x, cos, sin):
            return (x * cos).addcmul_(x.roll(x.size(-1) // 2, -1), sin)

        def _attention(x, cos, sin, mask: Optional[Tensor], key_cache, value_cache, past: int, in_norm,
                       q_w, q_b: Optional[Tensor], k_w, k_b: Optional[Tensor], v_w, v_b: Optional[Tensor], o_w, o_b: Optional[Tensor],
                       q_norm, k_norm, heads: int, kv_heads: int, eps: float, fused: bool):
            b = x.size(0)
            s = x.size(1)
            d = q_norm.size(0)
            n = _norm(x, in_norm, eps, fused)
            q = _rotate(_norm(torch.linear(n, q_w, q_b).view(b, s, heads, d), q_norm, eps, fused), cos, sin).transpose(1, 2)
            k = _rotate(_norm(torch.linear(n, k_w, k_b).view(b, s, kv_heads, d), k_norm, eps, fused), cos, sin).transpose(1, 2)
            v = torch.linear(n, v_w, v_b).view(b, s, kv_heads, d).transpose(1, 2)
            key_cache.narrow(2, past, s).copy_(k)
            value_cache.narrow(2, past, s).copy_(v)
            o = torch.scaled_dot_product_attention(q, key_cache.narrow(2, 0, past + s), value_cache.narrow(2, 0, past + s),
                                                   attn_mask=mask, enable_gqa=True)
            return x + torch.linear(o.transpose(1, 2).reshape(b, s, heads * d), o_w, o_b)

        def _grouped(a, w, offs, kernel: bool):
            if kernel:
                return torch._grouped_mm(a, w.transpose(-2, -1), offs=offs)
            ends: List[int] = offs.long().tolist()
            outs: List[Tensor] = []
            start = 0
            for e in range(len(ends)):
                if ends[e] > start:
                    outs.append(torch.linear(a.narrow(0, start, ends[e] - start), w[e], None))
                start = ends[e]
            if len(outs) == 0:
                return a.new_zeros([0, w.size(1)])
            return torch.cat(outs, 0)

        def _sorted_experts(x, weights, experts, gate_up, down, grouped_gate_up: bool, grouped_down: bool):
            t = x.size(0)
            k = experts.size(1)
            e = gate_up.size(0)
            flat = experts.reshape(-1)
            perm = torch.sort(flat, dim=0, descending=False, stable=True)[1]
            offs = flat.float().histc(e, 0, e - 1).cumsum(0).int()
            xs = x.index_select(0, perm.div(k, rounding_mode='floor'))
            halves = _grouped(xs, gate_up, offs, grouped_gate_up).chunk(2, -1)
            y = _grouped(torch.silu(halves[0]) * halves[1], down, offs, grouped_down)
            inverse = torch.empty_like(perm).scatter_(0, perm, torch.arange(perm.size(0), dtype=perm.dtype, device=perm.device))
            return weights.unsqueeze(1).bmm(y.index_select(0, inverse).view(t, k, -1)).squeeze(1)

        def _gathered_experts(x, weights, experts, gate_up, down):
            t = x.size(0)
            k = experts.size(1)
            h = x.size(1)
            flat = experts.reshape(-1)
            xs = x.unsqueeze(1).expand(t, k, h).reshape(t * k, 1, h)
            halves = xs.bmm(gate_up.index_select(0, flat).transpose(1, 2)).chunk(2, -1)
            y = (torch.silu(halves[0]) * halves[1]).bmm(down.index_select(0, flat).transpose(1, 2))
            return weights.unsqueeze(1).bmm(y.view(t, k, h)).squeeze(1)

        def sparse_layer(x, cos, sin, mask: Optional[Tensor], key_cache, value_cache, past: int, in_norm,
                         q_w, q_b: Optional[Tensor], k_w, k_b: Optional[Tensor], v_w, v_b: Optional[Tensor], o_w, o_b: Optional[Tensor],
                         q_norm, k_norm, heads: int, kv_heads: int, eps: float, fused: bool,
                         post_norm, router, gate_up, down, top_k: int, renormalize: bool, gather_pairs: int,
                         grouped_gate_up: bool, grouped_down: bool):
            h = _attention(x, cos, sin, mask, key_cache, value_cache, past, in_norm, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b,
                           q_norm, k_norm, heads, kv_heads, eps, fused)
            tokens = _norm(h, post_norm, eps, fused).reshape(-1, h.size(-1))
            logits = torch.linear(tokens, router, None)
            weights, experts = logits.float().softmax(-1).topk(top_k, -1)
            if renormalize:
                weights = weights / weights.sum(-1, keepdim=True)
            weights = weights.to(tokens.dtype)
            if tokens.size(0) * top_k <= gather_pairs:
                y = _gathered_experts(tokens, weights, experts, gate_up, down)
            else:
                y = _sorted_experts(tokens, weights, experts, gate_up, down, grouped_gate_up, grouped_down)
            return h + y.view(h.size()), logits

        def dense_layer(x, cos, sin, mask: Optional[Tensor], key_cache, value_cache, past: int, in_norm,
                        q_w, q_b: Optional[Tensor], k_w, k_b: Optional[Tensor], v_w, v_b: Optional[Tensor], o_w, o_b: Optional[Tensor],
                        q_norm, k_norm, heads: int, kv_heads: int, eps: float, fused: bool,
                        post_norm, gate_w, up_w, down_w):
            h = _attention(x, cos, sin, mask, key_cache, value_cache, past, in_norm, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b,
                           q_norm, k_norm, heads, kv_heads, eps, fused)
            n = _norm(h, post_norm, eps, fused)
            return h + torch.linear(torch.silu(torch.linear(n, gate_w, None)) * torch.linear(n, up_w, None), down_w, None)
        """;

    private static readonly Lazy<jit.CompilationUnit> Unit = new(() => jit.compile(Source + "\n"));   // the parser wants a final newline

    /// <summary>
    /// Runs <paramref name="layer"/> on S new tokens per row after the cached ones, writing their keys and values into
    /// <paramref name="cache"/>.
    /// </summary>
    /// <param name="layer">The decoder layer (its weights are read as they are).</param>
    /// <param name="x">[B,S,H] input hidden states.</param>
    /// <param name="cos">[B,S,1,D] rotary cosines of the new tokens' positions.</param>
    /// <param name="signedSin">[B,S,1,D] rotary sines, first half negated (<see cref="RotaryEmbedding.Broadcast"/>).</param>
    /// <param name="mask">Optional boolean [B or 1,1,S,T] (true = attend, T = cached + S); null attends to every key.</param>
    /// <param name="cache">The layer's cache; the step writes at its owner's current length.</param>
    /// <param name="kernels">The model's kernel choices (fused RMSNorm, gather threshold).</param>
    /// <returns>The layer output [B,S,H] and, on a sparse layer, the router logits [B*S,E].</returns>
    public static (Tensor Output, Tensor? RouterLogits) Step(Qwen3MoeLayer layer, Tensor x, Tensor cos, Tensor signedSin, Tensor? mask,
        LayerKvCache cache, KernelOptions kernels)
    {
        var (keys, values, past) = cache.Reserve(x.shape[0], x.shape[1]);
        var a = layer.self_attn;
        var args = new List<object?>
        {
            x, cos, signedSin, mask, keys, values, checked((int)past), layer.input_layernorm.weight,
            a.q_proj.weight, a.q_proj.bias, a.k_proj.weight, a.k_proj.bias, a.v_proj.weight, a.v_proj.bias, a.o_proj.weight, a.o_proj.bias,
            a.q_norm.weight, a.k_norm.weight, a.Heads, a.KvHeads, layer.input_layernorm.Eps, kernels.FusedRmsNorm,
            layer.post_attention_layernorm.weight,
        };
        if (layer.mlp is MoeLayer moe)
        {
            var (gateUp, down) = (moe.experts.gate_up_proj, moe.experts.down_proj);
            args.AddRange(new object[]
            {
                moe.gate.weight, gateUp, down, moe.gate.TopK, moe.gate.Renormalize, Math.Max(kernels.DecodeGatherPairs, 0),
                GroupedMatmul.UsesGroupedKernel(x.device_type, x.dtype, gateUp.shape[2], gateUp),
                GroupedMatmul.UsesGroupedKernel(x.device_type, x.dtype, down.shape[2], down),
            });
            var (output, logits) = Unit.Value.invoke<(Tensor, Tensor)>("sparse_layer", args.ToArray()!);
            return (output, logits);
        }
        var mlp = (SwiGluMlp)layer.mlp;
        args.AddRange(new object[] { mlp.gate_proj.weight!, mlp.up_proj.weight!, mlp.down_proj.weight! });
        return (Unit.Value.invoke<Tensor>("dense_layer", args.ToArray()!), null);
    }
}
