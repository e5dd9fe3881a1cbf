namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>What a model collects from its intermediate hidden states (the seed's <c>HiddenStatesAggregationMode</c>).</summary>
public enum HiddenStatesAggregationMode
{
    /// <summary>Nothing is collected; no snapshot is produced and the aggregation mask is ignored.</summary>
    No,

    /// <summary>
    /// The embedding output and every layer output are reduced to a masked mean over the sequence ([B,H], computed in
    /// float32 and cast back) and stacked into a snapshot [entries, B, H] that grows from stage to stage.
    /// </summary>
    Mean,
}
