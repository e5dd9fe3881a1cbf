using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Storage;

namespace Microsoft.ML.Qwen3Moe.Training.Checkpoints;

/// <summary>
/// Periodic, crash-safe training checkpoints in one folder (<c>step-00000500</c>, <c>step-00001000</c>, ...), keeping the
/// newest <see cref="TrainingCheckpointerOptions.KeepLast"/>, and resume from the newest complete one.
/// </summary>
/// <remarks>
/// <para>Typical loop:</para>
/// <code>
/// var checkpointer = new TrainingCheckpointer(new() { Directory = dir, SaveEverySteps = 200 });
/// var next = checkpointer.TryRestoreLatest(executor, trainer, out var resumed) ? resumed : DataPosition.Start;
/// while (trainer.Step &lt; total)
/// {
///     var batches = ReadBatches(ref next);                 // the caller's data, from its position
///     trainer.TrainStep(batches);
///     checkpointer.SaveIfDue(executor, trainer, next);     // 'next' = where the following step's data starts
/// }
/// </code>
/// <para>
/// Guarantees: each checkpoint appears under its final name only once complete (see <see cref="TrainingCheckpoint"/>);
/// deleting an old checkpoint first renames it to a hidden name, so a kill mid-delete never leaves a partial folder
/// under a <c>step-*</c> name; loading skips any folder whose manifest is missing or whose files do not match it
/// (reported through <see cref="TrainingCheckpointerOptions.Log"/>) and falls back to the next older one. Hidden
/// leftovers of an interrupted save or delete (of a process that has ended) are resolved on the next save or restore. One process writes a folder
/// at a time.
/// </para>
/// </remarks>
public sealed partial class TrainingCheckpointer
{
    private const string Prefix = "step-";
    private readonly string _root;

    /// <summary>Validates <paramref name="options"/>; the folder is created on the first save.</summary>
    public TrainingCheckpointer(TrainingCheckpointerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        _root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.Directory));
    }

    /// <summary>The options.</summary>
    public TrainingCheckpointerOptions Options { get; }

    /// <summary>Whether a checkpoint is due once <paramref name="step"/> optimizer steps are done.</summary>
    public bool IsDue(int step) => step > 0 && step % Options.SaveEverySteps == 0;

    /// <summary>Saves when <see cref="IsDue"/> for the trainer's step (call it after each step); returns the folder written, or null.</summary>
    public string? SaveIfDue(IStepExecutor executor, CausalLMTrainer trainer, DataPosition next) =>
        IsDue(trainer.Step) ? Save(executor, trainer, next) : null;

    /// <summary>
    /// Writes the checkpoint of the trainer's current step (replacing one of the same step), then deletes all but the
    /// newest <see cref="TrainingCheckpointerOptions.KeepLast"/>. Damaged checkpoints of later steps (left by a run that
    /// could not resume from them) are deleted first.
    /// </summary>
    /// <returns>The checkpoint folder.</returns>
    /// <exception cref="InvalidOperationException">The folder holds a complete checkpoint of a later step: it belongs to
    /// another run (restore it, or use another folder).</exception>
    public string Save(IStepExecutor executor, CausalLMTrainer trainer, DataPosition next)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        RemoveLeftovers();
        foreach (var (step, folder) in Checkpoints().Where(c => c.Step > trainer.Step))
        {
            if (Problem(folder) is null)
                throw new InvalidOperationException($"'{_root}' holds a complete checkpoint of step {step}, later than the step {trainer.Step} being saved: " +
                    $"it belongs to another run. Restore it (TryRestoreLatest) or use another folder.");
            Delete(folder, "damaged checkpoint of a later step");
        }
        var path = Path.Combine(_root, FolderName(trainer.Step));
        TrainingCheckpoint.Save(path, executor, trainer, next);
        foreach (var (_, folder) in Checkpoints().Skip(Options.KeepLast)) Delete(folder, null);
        return path;
    }

    /// <summary>The newest complete checkpoint folder, or null when there is none.</summary>
    public string? FindLatest() => Checkpoints().Select(c => c.Folder).FirstOrDefault(f => Problem(f) is null);

    /// <summary>
    /// Restores the newest complete checkpoint into <paramref name="executor"/>'s stages and <paramref name="trainer"/>
    /// (built as for the interrupted run, with the same options); incomplete or damaged ones are skipped (logged).
    /// </summary>
    /// <param name="executor">The stages to load the weights and MoE statistics into.</param>
    /// <param name="trainer">Receives optimizer state, master weights and step.</param>
    /// <param name="position">Where the data of the next step starts; null when nothing was restored.</param>
    /// <returns>True when a checkpoint was restored; false when the folder holds none (start from scratch), or only
    /// damaged ones with <see cref="DamagedCheckpointPolicy.StartFresh"/>.</returns>
    /// <exception cref="InvalidDataException">The folder holds checkpoints, none of them complete and undamaged, and
    /// <see cref="TrainingCheckpointerOptions.OnDamagedCheckpoints"/> is <see cref="DamagedCheckpointPolicy.Stop"/>; the
    /// message names each one and its problem. Nothing was changed or deleted.</exception>
    /// <exception cref="ArgumentException">The newest complete checkpoint does not fit the model or trainer.</exception>
    public bool TryRestoreLatest(IStepExecutor executor, CausalLMTrainer trainer, [NotNullWhen(true)] out DataPosition? position)
    {
        RemoveLeftovers();
        var damaged = new List<string>();
        foreach (var (step, folder) in Checkpoints())
        {
            try
            {
                position = TrainingCheckpoint.Restore(folder, executor, trainer, Options.VerifyHashes, expectedStep: step);
                return true;
            }
            catch (InvalidDataException e)
            {
                damaged.Add(e.Message);
                Options.Log?.Invoke($"Skipped: {e.Message}");
            }
        }
        position = null;
        if (damaged.Count == 0) return false;
        if (Options.OnDamagedCheckpoints == DamagedCheckpointPolicy.Stop)
            throw new InvalidDataException($"'{_root}' holds {damaged.Count} training checkpoint(s) and none is complete and undamaged, so the run cannot " +
                $"resume: " +
                $"{string.Join(" ", damaged)} Nothing was deleted. Restore or move them away, or set OnDamagedCheckpoints = StartFresh to start from step 0 " +
                "(the damaged checkpoints are then deleted at the first save).");
        Options.Log?.Invoke($"Starting from step 0: none of the {damaged.Count} checkpoint(s) in '{_root}' is complete and undamaged (OnDamagedCheckpoints = " +
            $"StartFresh); they are deleted at the first save.");
        return false;
    }

    /// <summary>Checkpoint folders by step, newest first (complete or not).</summary>
    private List<(int Step, string Folder)> Checkpoints()
    {
        if (!Directory.Exists(_root)) return new();
        return Directory.EnumerateDirectories(_root)
            .Select(d => (Name: Path.GetFileName(d), Folder: d))
            .Where(d => FolderPattern().IsMatch(d.Name) && int.TryParse(d.Name.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .Select(d => (int.Parse(d.Name.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture), d.Folder))
            .OrderByDescending(d => d.Item1)
            .ToList();
    }

    private string? Problem(string folder)
    {
        try
        {
            TrainingCheckpoint.Verify(folder, Options.VerifyHashes, expectedStep: StepOf(folder));
            return null;
        }
        catch (InvalidDataException e)
        {
            Options.Log?.Invoke($"Skipped: {e.Message}");
            return e.Message;
        }
    }

    /// <summary>
    /// Resolves hidden leftovers of interrupted saves and deletes of processes that have ended (<see cref="FolderSwap.RemoveLeftovers"/>):
    /// a save killed between its two renames leaves the previous folder of that step as <c>.step-N.*.old</c> with no
    /// <c>step-N</c>: it is renamed back instead.
    /// </summary>
    private void RemoveLeftovers() => FolderSwap.RemoveLeftovers(_root, n => FolderPattern().IsMatch(n), Options.Log);

    /// <summary>Renames to a hidden name (atomic) before deleting, so no partial folder is ever left under a checkpoint name.</summary>
    private void Delete(string folder, string? why)
    {
        FolderSwap.Delete(folder);
        if (why is not null) Options.Log?.Invoke($"Deleted '{folder}' ({why}).");
    }

    private static int StepOf(string folder) => int.Parse(Path.GetFileName(folder).AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture);

    private static string FolderName(int step) => Prefix + step.ToString("D8", CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^step-[0-9]{8,10}$", RegexOptions.CultureInvariant)]
    private static partial Regex FolderPattern();
}
