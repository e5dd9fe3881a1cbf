using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Causal grouped-query attention with per-head RMSNorm on q and k before RoPE (Qwen3), through
/// <c>scaled_dot_product_attention</c>, or FlashAttention-2 directly where it applies (<see cref="KernelOptions.FlashAttention"/>).
/// Grouped K/V heads go to SDPA with <c>enable_gqa</c> (through TorchScript: TorchSharp's binding has no GQA flag), so expanded
/// K/V are never materialised.
/// </summary>
internal sealed class GroupedQueryAttention : nn.Module<Tensor, Tensor>
{
    private readonly int _heads, _kvHeads, _headDim;
    private readonly bool _gqaKernel, _flash;

    public Linear q_proj, k_proj, v_proj, o_proj;
    public RmsNorm q_norm, k_norm;

    public GroupedQueryAttention(int hidden, int heads, int kvHeads, int headDim, bool bias, double eps, Device? device, ScalarType dtype,
        KernelOptions kernels)
        : base(nameof(GroupedQueryAttention))
    {
        _gqaKernel = kernels.GroupedQueryAttention;
        _flash = kernels.FlashAttention;
        _heads = heads;
        _kvHeads = kvHeads;
        _headDim = headDim;
        q_proj = nn.Linear(hidden, heads * headDim, bias, device, dtype);
        k_proj = nn.Linear(hidden, kvHeads * headDim, bias, device, dtype);
        v_proj = nn.Linear(hidden, kvHeads * headDim, bias, device, dtype);
        o_proj = nn.Linear(heads * headDim, hidden, bias, device, dtype);
        q_norm = new RmsNorm(headDim, eps, device, dtype, kernels.FusedRmsNorm);
        k_norm = new RmsNorm(headDim, eps, device, dtype, kernels.FusedRmsNorm);
        RegisterComponents();
    }

    /// <summary>Query heads.</summary>
    public int Heads => _heads;

    /// <summary>Key/value heads (each shared by <see cref="Heads"/> / this many query heads).</summary>
    public int KvHeads => _kvHeads;

    /// <summary>Late init: default linear init for the projections, ones for the q/k norms.</summary>
    public void ResetParameters(ParameterInitializer init)
    {
        init.Linear(nameof(q_proj), q_proj);
        init.Linear(nameof(k_proj), k_proj);
        init.Linear(nameof(v_proj), v_proj);
        init.Linear(nameof(o_proj), o_proj);
        q_norm.ResetParameters();
        k_norm.ResetParameters();
    }

    /// <summary>Use <see cref="Forward"/>: attention needs the rotary tables.</summary>
    public override Tensor forward(Tensor x) => throw new NotSupportedException("Call Forward(x, cos, sin, mask).");

    /// <param name="x">[B,S,H] input.</param>
    /// <param name="cos">[B,S,D] rotary table.</param>
    /// <param name="sin">[B,S,D] rotary table.</param>
    /// <param name="mask">Optional boolean [B,1,S,T] (true = attend) that already includes causality; null = causal only (or, after a cache's prefill, every
    /// cached key).</param>
    /// <param name="cache">Optional key/value cache of this layer: the new keys/values are written after the cached ones and the queries attend to all of them
    /// (T = cached + S).</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, Generation.LayerKvCache? cache = null)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], s = x.shape[1];
        var q = q_norm.forward(q_proj.call(x).view(b, s, _heads, _headDim));                  // [B,S,nH,D]
        var k = k_norm.forward(k_proj.call(x).view(b, s, _kvHeads, _headDim));                // [B,S,nKV,D]
        (q, k) = RotaryEmbedding.Apply(q, k, cos, sin);                                           // contiguous: roll needs no copy
        q = q.transpose(1, 2);                                                                    // [B,nH,S,D]
        k = k.transpose(1, 2);                                                                    // [B,nKV,S,D]
        var v = v_proj.call(x).view(b, s, _kvHeads, _headDim).transpose(1, 2);                // [B,nKV,S,D]
        bool causal = true;
        if (cache is not null) (k, v, causal) = cache.Append(k, v);                               // [B,nKV,T,D]; causal only on an empty cache
        long t = k.shape[2];
        bool flash = _flash && mask is null && causal && AtenScript.FlashAttentionApplies(q.device_type, q.dtype, s, t, _headDim);
        Tensor o;
        if (_kvHeads != _heads && _gqaKernel) o = flash ? AtenScript.CausalFlashAttention(q, k, v) : AtenScript.GqaAttention(q, k, v, mask, causal);
        else
        {
            if (_kvHeads != _heads)
            {
                int group = _heads / _kvHeads;
                k = k.unsqueeze(2).expand(b, _kvHeads, group, t, _headDim).reshape(b, _heads, t, _headDim);  // [B,nH,T,D]
                v = v.unsqueeze(2).expand(b, _kvHeads, group, t, _headDim).reshape(b, _heads, t, _headDim);
            }
            o = flash ? AtenScript.CausalFlashAttention(q, k, v)
                : mask is null ? nn.functional.scaled_dot_product_attention(q, k, v, is_casual: causal)
                : nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        }
        var merged = o.transpose(1, 2).reshape(b, s, _heads * _headDim);                          // [B,S,nH*D]
        return o_proj.call(merged).MoveToOuterDisposeScope();
    }
}
