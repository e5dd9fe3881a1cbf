namespace Microsoft.ML.Qwen3Moe.Training.Checkpoints;

/// <summary>What a resume does when the checkpoint folder holds checkpoints but none of them is complete and undamaged.</summary>
public enum DamagedCheckpointPolicy
{
    /// <summary>Throw, naming every damaged checkpoint and what is wrong with it; nothing is deleted.</summary>
    Stop,

    /// <summary>Start from step 0 (with a log line per damaged checkpoint); the damaged checkpoints are deleted at the first save.</summary>
    StartFresh,
}
