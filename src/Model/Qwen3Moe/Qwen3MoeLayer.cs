using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Kernels;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>One pre-norm decoder layer: <c>h = x + attn(norm(x))</c>, <c>out = h + mlp(norm(h))</c>; the MLP is MoE or dense.</summary>
internal sealed class Qwen3MoeLayer : nn.Module<Tensor, Tensor>
{
    public RmsNorm input_layernorm;
    public GroupedQueryAttention self_attn;
    public RmsNorm post_attention_layernorm;
    public nn.Module<Tensor, Tensor> mlp;

    public Qwen3MoeLayer(Qwen3MoeLayerParameters p, int index, bool sparse, Device? device, ScalarType dtype, KernelOptions kernels)
        : base(nameof(Qwen3MoeLayer))
    {
        Index = index;
        input_layernorm = new RmsNorm(p.HiddenSize, p.RmsNormEps, device, dtype, kernels.FusedRmsNorm);
        self_attn = new GroupedQueryAttention(p.HiddenSize, p.NumAttentionHeads, p.NumKeyValueHeads, p.HeadDim, p.AttentionBias, p.RmsNormEps, device, dtype,
            kernels);
        post_attention_layernorm = new RmsNorm(p.HiddenSize, p.RmsNormEps, device, dtype, kernels.FusedRmsNorm);
        mlp = sparse
            ? new MoeLayer(p.HiddenSize, p.NumExperts, p.MoeIntermediateSize, p.ExpertsTopK, p.NormalizeTopKProbabilities, device, dtype,
                kernels.ExpertPermutation)
            : new SwiGluMlp(p.HiddenSize, p.IntermediateSize, device, dtype);
        RegisterComponents();
    }

    /// <summary>Global index of the layer (its key in the backbone's <c>layers</c>).</summary>
    public int Index { get; }

    /// <summary>The MoE block, or null on a dense layer.</summary>
    public MoeLayer? Moe => mlp as MoeLayer;

    /// <summary>Late init of attention, MLP and both norms (the seed's order); zeroes the MoE statistics.</summary>
    public void ResetParameters(ParameterInitializer init)
    {
        self_attn.ResetParameters(init.Scope(nameof(self_attn)));
        if (mlp is MoeLayer moe) moe.ResetParameters(init.Scope(nameof(mlp)));
        else ((SwiGluMlp)mlp).ResetParameters(init.Scope(nameof(mlp)));
        input_layernorm.ResetParameters();
        post_attention_layernorm.ResetParameters();
    }

    /// <summary>Use <see cref="Forward"/>.</summary>
    public override Tensor forward(Tensor x) => throw new NotSupportedException("Call Forward(x, cos, sin, mask, tokenMask, countStatistics).");

    /// <returns>The layer output [B,S,H] and, on a sparse layer, the router logits [B*S,E].</returns>
    public (Tensor Output, Tensor? RouterLogits) Forward(Tensor x, Tensor cos, Tensor sin, Tensor? attentionMask4d, Tensor? tokenMask, bool countStatistics)
    {
        using var scope = NewDisposeScope();
        var h = x.Plus(self_attn.Forward(input_layernorm.forward(x), cos, sin, attentionMask4d));
        var normed = post_attention_layernorm.forward(h);
        Tensor? routerLogits = null;
        Tensor ff;
        if (mlp is MoeLayer moe) (ff, routerLogits) = moe.Forward(normed, tokenMask, countStatistics);
        else ff = mlp.forward(normed);
        var outp = h.Plus(ff);
        return (outp.MoveToOuterDisposeScope(), routerLogits?.MoveToOuterDisposeScope());
    }
}
