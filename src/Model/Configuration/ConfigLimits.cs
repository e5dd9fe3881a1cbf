namespace Microsoft.ML.Qwen3Moe.Configuration;

/// <summary>
/// The largest sizes a model config may ask for. They are far above every published Qwen3-MoE (e.g. Qwen3-235B-A22B:
/// hidden 4,096, 128 experts, 94 layers, vocabulary 151,936) and keep a hostile or mistyped config from asking for
/// absurd shapes; whether a config within them fits the device is checked separately, from its byte size, before
/// anything is allocated.
/// </summary>
public static class ConfigLimits
{
    /// <summary>Most model width (<c>hidden_size</c>): 65,536.</summary>
    public const int MaxHiddenSize = 1 << 16;

    /// <summary>Most width of an expert's or the dense MLP (<c>moe_intermediate_size</c>, <c>intermediate_size</c>): 1,048,576.</summary>
    public const int MaxIntermediateSize = 1 << 20;

    /// <summary>Most routed experts per layer (<c>num_experts</c>): 4,096.</summary>
    public const int MaxExperts = 1 << 12;

    /// <summary>Most attention (or key/value) heads: 1,024.</summary>
    public const int MaxHeads = 1 << 10;

    /// <summary>Most width of one attention head (<c>head_dim</c>): 4,096.</summary>
    public const int MaxHeadDim = 1 << 12;

    /// <summary>Most decoder layers (<c>num_hidden_layers</c>): 1,024.</summary>
    public const int MaxLayers = 1 << 10;

    /// <summary>Most token ids (<c>vocab_size</c>, all vocabulary splits together): 16,777,216.</summary>
    public const int MaxVocabSize = 1 << 24;

    /// <summary>Most positions (<c>max_position_embeddings</c>): 16,777,216.</summary>
    public const int MaxPositions = 1 << 24;

    internal static void Check(long value, long max, string field) =>
        Require.That(value <= max, field, value, $"exceeds the limit of {max:N0} (ConfigLimits).");
}
