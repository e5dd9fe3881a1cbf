namespace Microsoft.ML.Qwen3Moe.Configuration;

/// <summary>
/// Shapes and numerics of one Qwen3-MoE decoder layer (the seed's <c>Qwen3MoELayerParameters</c>, extended with the
/// Hugging Face fields that change the math: dense layers, top-k renormalisation and attention bias).
/// </summary>
public sealed record Qwen3MoeLayerParameters
{
    /// <summary>Model width H (HF <c>hidden_size</c>).</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Width of each routed expert's SwiGLU (HF <c>moe_intermediate_size</c>).</summary>
    public required int MoeIntermediateSize { get; init; }

    /// <summary>Width of the dense SwiGLU MLP used by non-sparse layers (HF <c>intermediate_size</c>).</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Number of routed experts E (HF <c>num_experts</c> or <c>num_local_experts</c>).</summary>
    public required int NumExperts { get; init; }

    /// <summary>Experts chosen per token k (HF <c>num_experts_per_tok</c>).</summary>
    public required int ExpertsTopK { get; init; }

    /// <summary>Number of query heads.</summary>
    public required int NumAttentionHeads { get; init; }

    /// <summary>Number of key/value heads (GQA when fewer than the query heads, MQA when 1).</summary>
    public required int NumKeyValueHeads { get; init; }

    /// <summary>Epsilon of every RMSNorm in the layer, q/k norms included.</summary>
    public required double RmsNormEps { get; init; }

    /// <summary>Width of one attention head D; independent of <see cref="HiddenSize"/> / heads.</summary>
    public required int HeadDim { get; init; }

    /// <summary>Whether the k routing weights are divided by their sum (HF <c>norm_topk_prob</c>). Default true.</summary>
    public bool NormalizeTopKProbabilities { get; init; } = true;

    /// <summary>Whether q/k/v/o projections carry a bias (HF <c>attention_bias</c>). Default false.</summary>
    public bool AttentionBias { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid field.</summary>
    public void Validate()
    {
        Require.Positive(HiddenSize, nameof(HiddenSize));
        Require.Positive(MoeIntermediateSize, nameof(MoeIntermediateSize));
        Require.Positive(IntermediateSize, nameof(IntermediateSize));
        Require.Positive(NumExperts, nameof(NumExperts));
        Require.Positive(ExpertsTopK, nameof(ExpertsTopK));
        Require.That(ExpertsTopK <= NumExperts, nameof(ExpertsTopK), ExpertsTopK, $"cannot exceed NumExperts ({NumExperts}).");
        Require.Positive(NumAttentionHeads, nameof(NumAttentionHeads));
        Require.Positive(NumKeyValueHeads, nameof(NumKeyValueHeads));
        Require.That(NumAttentionHeads % NumKeyValueHeads == 0, nameof(NumKeyValueHeads), NumKeyValueHeads,
            $"must divide NumAttentionHeads ({NumAttentionHeads}).");
        Require.PositiveFinite(RmsNormEps, nameof(RmsNormEps));
        Require.Positive(HeadDim, nameof(HeadDim));
        Require.That(HeadDim % 2 == 0, nameof(HeadDim), HeadDim, "must be even for rotary embeddings.");
        ConfigLimits.Check(HiddenSize, ConfigLimits.MaxHiddenSize, nameof(HiddenSize));
        ConfigLimits.Check(MoeIntermediateSize, ConfigLimits.MaxIntermediateSize, nameof(MoeIntermediateSize));
        ConfigLimits.Check(IntermediateSize, ConfigLimits.MaxIntermediateSize, nameof(IntermediateSize));
        ConfigLimits.Check(NumExperts, ConfigLimits.MaxExperts, nameof(NumExperts));
        ConfigLimits.Check(NumAttentionHeads, ConfigLimits.MaxHeads, nameof(NumAttentionHeads));
        ConfigLimits.Check(NumKeyValueHeads, ConfigLimits.MaxHeads, nameof(NumKeyValueHeads));
        ConfigLimits.Check(HeadDim, ConfigLimits.MaxHeadDim, nameof(HeadDim));
    }
}
