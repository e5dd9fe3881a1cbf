namespace Microsoft.ML.Qwen3Moe.Configuration;

/// <summary>The Qwen3-MoE backbone (the seed's <c>Qwen3MoEParameters</c>, plus dense-layer placement).</summary>
public sealed record Qwen3MoeParameters
{
    /// <summary>The name of the vocabulary split that a Hugging Face checkpoint fills.</summary>
    public const string DefaultSplitName = "default";

    /// <summary>Shapes shared by every decoder layer.</summary>
    public required Qwen3MoeLayerParameters Layer { get; init; }

    /// <summary>Total number of decoder layers L.</summary>
    public required int NumHiddenLayers { get; init; }

    /// <summary>RoPE base theta.</summary>
    public required double RopeBase { get; init; }

    /// <summary>Size of the rotary table: position ids must be below this (HF <c>max_position_embeddings</c>).</summary>
    public required int MaxPositionIds { get; init; }

    /// <summary>Name to size of each vocabulary split; global ids follow <see cref="SplitVocabOrder"/>.</summary>
    public required IReadOnlyDictionary<string, int> SplitVocabSize { get; init; }

    /// <summary>Concatenation order of the splits, which defines global token ids.</summary>
    public required IReadOnlyList<string> SplitVocabOrder { get; init; }

    /// <summary>Layers that use the dense MLP regardless of <see cref="DecoderSparseStep"/> (HF <c>mlp_only_layers</c>).</summary>
    public IReadOnlyList<int> MlpOnlyLayers { get; init; } = Array.Empty<int>();

    /// <summary>Layer i is sparse when (i + 1) % step == 0 and it is not in <see cref="MlpOnlyLayers"/> (HF <c>decoder_sparse_step</c>). Default 1.</summary>
    public int DecoderSparseStep { get; init; } = 1;

    /// <summary>Virtual cost of the embeddings on the first pipeline stage (steers the layer split only). Default 0.</summary>
    public int PipelineNumVirtualLayersPre { get; init; }

    /// <summary>Virtual cost of the final norm and head on the last pipeline stage. Default 0.</summary>
    public int PipelineNumVirtualLayersPost { get; init; }

    /// <summary>Total vocabulary size: the sum of all splits.</summary>
    public int VocabSize => SplitVocabOrder.Sum(n => SplitVocabSize[n]);

    /// <summary>Whether layer <paramref name="layerIndex"/> (global) uses routed experts rather than the dense MLP.</summary>
    public bool IsSparseLayer(int layerIndex) =>
        !MlpOnlyLayers.Contains(layerIndex) && Layer.NumExperts > 0 && (layerIndex + 1) % DecoderSparseStep == 0;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid field.</summary>
    public void Validate()
    {
        Layer.Validate();
        Require.Positive(NumHiddenLayers, nameof(NumHiddenLayers));
        Require.PositiveFinite(RopeBase, nameof(RopeBase));
        Require.Positive(MaxPositionIds, nameof(MaxPositionIds));
        Require.Positive(DecoderSparseStep, nameof(DecoderSparseStep));
        Require.NonNegative(PipelineNumVirtualLayersPre, nameof(PipelineNumVirtualLayersPre));
        Require.NonNegative(PipelineNumVirtualLayersPost, nameof(PipelineNumVirtualLayersPost));
        Require.That(SplitVocabOrder.Count > 0, nameof(SplitVocabOrder), "[]", "at least one vocabulary split is needed.");
        Require.That(SplitVocabOrder.Distinct().Count() == SplitVocabOrder.Count, nameof(SplitVocabOrder), string.Join(",", SplitVocabOrder),
            "split names must be unique.");
        Require.That(SplitVocabOrder.Count == SplitVocabSize.Count && SplitVocabOrder.All(SplitVocabSize.ContainsKey),
            nameof(SplitVocabOrder), string.Join(",", SplitVocabOrder),
                $"must name exactly the splits of SplitVocabSize ({string.Join(",", SplitVocabSize.Keys)}).");
        foreach (var (name, size) in SplitVocabSize) Require.Positive(size, $"{nameof(SplitVocabSize)}[{name}]");
        ConfigLimits.Check(NumHiddenLayers, ConfigLimits.MaxLayers, nameof(NumHiddenLayers));
        ConfigLimits.Check(MaxPositionIds, ConfigLimits.MaxPositions, nameof(MaxPositionIds));
        ConfigLimits.Check(SplitVocabSize.Values.Sum(v => (long)v), ConfigLimits.MaxVocabSize, "vocabulary size (all splits)");
        foreach (var l in MlpOnlyLayers)
            Require.That(l >= 0 && l < NumHiddenLayers, nameof(MlpOnlyLayers), l, $"layer index must be in [0, {NumHiddenLayers}).");
    }
}
