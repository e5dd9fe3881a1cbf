namespace Microsoft.ML.Qwen3Moe.Pipelining;

/// <summary>Which pipeline stage a module is built for (the seed's <c>PipelineStageInfo</c>).</summary>
/// <param name="CurrentStage">Zero-based index of this stage.</param>
/// <param name="NumStages">Total number of stages (virtual stages included).</param>
public readonly record struct PipelineStageInfo(int CurrentStage, int NumStages)
{
    /// <summary>The single stage of an unpipelined model.</summary>
    public static PipelineStageInfo Single => new(0, 1);

    /// <summary>Whether this stage owns the token embeddings.</summary>
    public bool IsFirst => CurrentStage == 0;

    /// <summary>Whether this stage owns the final norm and the head.</summary>
    public bool IsLast => CurrentStage == NumStages - 1;

    /// <summary>Throws when the stage index is outside [0, NumStages).</summary>
    public void Validate()
    {
        if (NumStages <= 0) throw new ArgumentOutOfRangeException(nameof(NumStages), NumStages, $"NumStages must be positive, got {NumStages}.");
        if (CurrentStage < 0 || CurrentStage >= NumStages)
            throw new ArgumentOutOfRangeException(nameof(CurrentStage), CurrentStage, $"CurrentStage must be in [0, {NumStages}), got {CurrentStage}.");
    }
}
