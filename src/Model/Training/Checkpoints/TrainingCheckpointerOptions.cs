namespace Microsoft.ML.Qwen3Moe.Training.Checkpoints;

/// <summary>Where and how often <see cref="TrainingCheckpointer"/> writes training checkpoints, and how many it keeps.</summary>
public sealed record TrainingCheckpointerOptions
{
    /// <summary>The folder holding the run's checkpoints (<c>step-00001000</c>, ...). One run per folder. Required.</summary>
    public required string Directory { get; init; }

    /// <summary>A checkpoint is due after every optimizer step whose count is a multiple of this. Default 500.</summary>
    public int SaveEverySteps { get; init; } = 500;

    /// <summary>How many of the newest checkpoints are kept; older ones are deleted after each save. Default 2.</summary>
    public int KeepLast { get; init; } = 2;

    /// <summary>
    /// Whether loading checks the SHA-256 of every file against the manifest (one extra read of the checkpoint) rather
    /// than only the sizes. Default true.
    /// </summary>
    public bool VerifyHashes { get; init; } = true;

    /// <summary>
    /// What <see cref="TrainingCheckpointer.TryRestoreLatest"/> does when the folder holds checkpoints but every one is
    /// damaged or incomplete (a run never leaves that state by itself: it points at a damaged disk, a tampered or copied
    /// folder). Default <see cref="DamagedCheckpointPolicy.Stop"/>: refuse to start, naming them, rather than silently
    /// start over and delete them at the first save.
    /// </summary>
    public DamagedCheckpointPolicy OnDamagedCheckpoints { get; init; } = DamagedCheckpointPolicy.Stop;

    /// <summary>Receives one line for each checkpoint skipped as incomplete or damaged, and each leftover cleaned up. Default none.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Directory)) throw new ArgumentException("Directory must name a folder.", nameof(Directory));
        if (SaveEverySteps <= 0) throw new ArgumentOutOfRangeException(nameof(SaveEverySteps), SaveEverySteps, "SaveEverySteps must be positive.");
        if (KeepLast <= 0) throw new ArgumentOutOfRangeException(nameof(KeepLast), KeepLast, "KeepLast must be positive.");
        if (!Enum.IsDefined(OnDamagedCheckpoints))
            throw new ArgumentOutOfRangeException(nameof(OnDamagedCheckpoints), OnDamagedCheckpoints, "OnDamagedCheckpoints: unknown value.");
    }
}
