using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Storage;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Training.Checkpoints;

/// <summary>
/// One training checkpoint folder: everything an interrupted run needs to continue with exactly the losses it would
/// have had. <see cref="TrainingCheckpointer"/> keeps a series of them; this class writes and reads one.
/// </summary>
/// <remarks>
/// <para>Layout (all tensors in safetensors, read back by the strict, fuzz-tested reader; no pickled or positional formats):</para>
/// <list type="bullet">
/// <item><c>model.safetensors</c>: every parameter of every stage (with LoRA adapters: only the factors and fully trained modules), under the module's own
/// parameter name (global layer
/// indices, fused experts, vocabulary splits; not the Hugging Face export layout: use
/// <see cref="HuggingFace.HuggingFaceCheckpoint.Save(Qwen3MoeForCausalLM, string, long)"/> for that), in the model's dtype. Names are
/// global, so a checkpoint can restore into another pipeline split of the same model.</item>
/// <item><c>trainer_state.safetensors</c>: per trained parameter, AdamW's <c>exp_avg</c>, <c>exp_avg_sq</c> (and
/// <c>max_exp_avg_sq</c> with AMSGrad) and its step count; the float32 master weights when the trainer keeps them;
/// the MoE routing counters of every sparse layer; the CPU generator state of libtorch.</item>
/// <item><c>manifest.json</c>, written last: step, <see cref="DataPosition"/>, trainer layout, and the size and SHA-256
/// of the two files above. A folder is complete exactly when its manifest is present and the files match it.</item>
/// </list>
/// <para>
/// The learning-rate schedule is a pure function of the step, so the step restores it. No module of the model draws
/// random numbers while training (Qwen3-MoE has no dropout here), so there is no CUDA generator state to keep; the CPU
/// generator state is saved for callers that draw from libtorch's default generator (prefer <see cref="DataOrder"/>).
/// </para>
/// <para>
/// <see cref="Save"/> writes into a hidden sibling temp folder, fsyncs each file, then renames the folder into place
/// and fsyncs the parent folder (see <see cref="FolderSwap"/> for the swap when the folder exists), so a process killed at any moment
/// leaves either no folder, the previous folder or the complete new one under the final name.
/// </para>
/// </remarks>
public static class TrainingCheckpoint
{
    internal const string ModelFileName = "model.safetensors";
    internal const string StateFileName = "trainer_state.safetensors";
    private const string RngKey = "rng.cpu";

    /// <summary>
    /// Writes the state of <paramref name="executor"/>'s stages and <paramref name="trainer"/> to <paramref name="folder"/>
    /// (created or replaced atomically), with <paramref name="next"/> as the data position to resume from.
    /// </summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <param name="executor">The executor whose stages are trained.</param>
    /// <param name="trainer">The trainer driving them; its <see cref="CausalLMTrainer.Step"/> is the checkpoint's step.</param>
    /// <param name="next">Where the batch of the next step starts.</param>
    public static void Save(string folder, IStepExecutor executor, CausalLMTrainer trainer, DataPosition next)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(executor);
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(next);
        next.Validate();
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        var parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{folder}' has no parent folder.", nameof(folder));
        Directory.CreateDirectory(parent);
        var staging = FolderSwap.CreateStaging(full);
        try
        {
            SafetensorsWriter.Write(Path.Combine(staging, ModelFileName), ModelTensors(executor).Select(x => KeyValuePair.Create(x.Name, (Tensor)x.Parameter)));
            using (NewDisposeScope())
                SafetensorsWriter.Write(Path.Combine(staging, StateFileName), StateTensors(executor, trainer));
            new TrainingCheckpointManifest
            {
                Step = trainer.Step,
                Position = next,
                MasterWeights = trainer.MasterWeights is not null,
                TrainedParameters = trainer.TrainedParameterNames,
                TrainingOptions = trainer.Options.ToString(),
                Files = new[] { ModelFileName, StateFileName }.ToDictionary(f => f, f => TrainingCheckpointManifest.Describe(Path.Combine(staging, f))),
            }.WriteTo(staging);
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
        FolderSwap.SwapIn(full, staging);
    }

    /// <summary>
    /// Restores a checkpoint written by <see cref="Save"/> into <paramref name="executor"/>'s stages and a
    /// <paramref name="trainer"/> built over them with the same <see cref="TrainingOptions"/>: weights, optimizer state,
    /// master weights, step (and so the learning rate), MoE statistics and the CPU generator state.
    /// </summary>
    /// <returns>The data position to continue from.</returns>
    /// <exception cref="InvalidDataException">The folder is not a complete, undamaged checkpoint (nothing was changed).</exception>
    /// <exception cref="ArgumentException">The checkpoint does not fit the model or trainer (other parameters, shapes, dtypes,
    /// trained set or master-weight setting, or a step beyond the trainer's <see cref="TrainingOptions.TotalSteps"/>); the
    /// message names the tensor or value. Nothing was changed.</exception>
    public static DataPosition Restore(string folder, IStepExecutor executor, CausalLMTrainer trainer, bool verifyHashes = true) =>
        Restore(folder, executor, trainer, verifyHashes, expectedStep: null);

    /// <summary><see cref="Restore(string, IStepExecutor, CausalLMTrainer, bool)"/>, also requiring the manifest's step to be <paramref name="expectedStep"/>
    /// (the step the folder is named for).</summary>
    internal static DataPosition Restore(string folder, IStepExecutor executor, CausalLMTrainer trainer, bool verifyHashes, int? expectedStep)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(executor);
        ArgumentNullException.ThrowIfNull(trainer);
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        var manifest = TrainingCheckpointManifest.ReadVerified(full, verifyHashes, expectedStep);
        if (manifest.Step > trainer.Options.TotalSteps)
            throw new ArgumentException($"Training checkpoint '{full}' is of step {manifest.Step}, beyond the {trainer.Options.TotalSteps} steps the trainer " +
                $"runs in all: it is not a checkpoint of this run.", nameof(trainer));
        if (manifest.MasterWeights != (trainer.MasterWeights is not null))
            throw new ArgumentException($"Training checkpoint '{full}' was written {(manifest.MasterWeights ? "with" : "without")} float32 master weights; " +
                $"the trainer has {(trainer.MasterWeights is null ? "none" : "them")}.", nameof(trainer));
        var names = trainer.TrainedParameterNames;
        if (!manifest.TrainedParameters.SequenceEqual(names))
        {
            var first = manifest.TrainedParameters.Zip(names).Select((p, i) => (p, i)).FirstOrDefault(x => x.p.First != x.p.Second);
            throw new ArgumentException($"Training checkpoint '{full}' trained {manifest.TrainedParameters.Count} parameters, the trainer trains {names.Count}"
                +
                (first.p.First is null ? "." : $"; they first differ at #{first.i}: '{first.p.First}' vs '{first.p.Second}'."), nameof(trainer));
        }

        using var modelFile = OpenChecked(full, ModelFileName);
        using var stateFile = OpenChecked(full, StateFileName);
        using var scope = NewDisposeScope();
        var modelTargets = ModelTensors(executor).ToDictionary(x => x.Name, x => (Tensor)x.Parameter, StringComparer.Ordinal);
        CheckFits(full, modelFile, modelTargets, extraKeys: new HashSet<string>());
        var states = OptimizerSlot.Of(trainer);
        var stateTargets = StateTensors(executor, trainer).Where(kv => kv.Key != RngKey && !kv.Key.EndsWith(".step", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var stepKeys = names.Select(n => $"optimizer.{n}.step").ToArray();
        CheckFits(full, stateFile, stateTargets, extraKeys: stepKeys.Append(RngKey).ToHashSet(StringComparer.Ordinal));
        foreach (var key in stepKeys)
        {
            var e = stateFile.Entries[key];
            if (e.DType != "I64" || e.Shape.Length != 0) throw Misfit(full, StateFileName, key, $"is {e.DType}{Shape(e.Shape)}; expected an I64 scalar");
        }
        var rng = stateFile.Entries[RngKey];
        if (rng.DType != "U8" || rng.Shape.Length != 1) throw
            Misfit(full, StateFileName, RngKey, $"is {rng.DType}{Shape(rng.Shape)}; expected a 1-D U8 tensor");
        var optimizerSteps = new long[stepKeys.Length];
        for (int i = 0; i < stepKeys.Length; i++)
        {
            using var step = stateFile.ReadTensor(stepKeys[i]);
            optimizerSteps[i] = step.item<long>();
            // each optimizer update of a parameter is one trainer step (skipped and gradient-less steps add none)
            if (optimizerSteps[i] < 0 || optimizerSteps[i] > manifest.Step)
                throw TrainingCheckpointManifest.Invalid(full, $"'{stepKeys[i]}' in {StateFileName} is {optimizerSteps[i]}, " +
                    $"outside [0, {manifest.Step}] (the checkpoint's step): impossible, so damaged.");
        }

        using (no_grad())
        {
            foreach (var (key, into) in modelTargets) Copy(modelFile, key, into);
            foreach (var (key, into) in stateTargets) Copy(stateFile, key, into);
        }
        for (int i = 0; i < states.Count; i++) states[i].SetStep(optimizerSteps[i]);
        using (var generator = stateFile.ReadTensor(RngKey)) random.set_rng_state(generator);
        trainer.SetStep(manifest.Step);
        return manifest.Position;
    }

    /// <summary>
    /// Checks that <paramref name="folder"/> is a complete, undamaged training checkpoint (manifest present, files of the
    /// recorded sizes and, when <paramref name="verifyHashes"/>, SHA-256) and returns its step.
    /// </summary>
    /// <exception cref="InvalidDataException">It is not; the message says why.</exception>
    public static int Verify(string folder, bool verifyHashes = true) => Verify(folder, verifyHashes, expectedStep: null);

    /// <summary><see cref="Verify(string, bool)"/>, also requiring the manifest's step to be <paramref name="expectedStep"/>.</summary>
    internal static int Verify(string folder, bool verifyHashes, int? expectedStep)
    {
        ArgumentNullException.ThrowIfNull(folder);
        return TrainingCheckpointManifest.ReadVerified(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)), verifyHashes, expectedStep).Step;
    }

    /// <summary>Every parameter; with LoRA adapters only the trained ones (the frozen base is not copied into every checkpoint).</summary>
    private static IEnumerable<(string Name, Parameter Parameter)> ModelTensors(IStepExecutor executor) =>
        executor.Stages.SelectMany(s => s.UniqueNamedParameters().Where(np => s.Lora is null || s.Lora.TrainableNames.Contains(np.Name)));

    /// <summary>The optimizer, master-weight, MoE and generator tensors, by key (new tensors go to the caller's dispose scope).</summary>
    private static IEnumerable<KeyValuePair<string, Tensor>> StateTensors(IStepExecutor executor, CausalLMTrainer trainer)
    {
        var names = trainer.TrainedParameterNames;
        var states = OptimizerSlot.Of(trainer);
        for (int i = 0; i < names.Count; i++)
        {
            var st = states[i];
            yield return KeyValuePair.Create($"optimizer.{names[i]}.exp_avg", st.ExpAvg);
            yield return KeyValuePair.Create($"optimizer.{names[i]}.exp_avg_sq", st.ExpAvgSq);
            if (st.MaxExpAvgSq is not null) yield return KeyValuePair.Create($"optimizer.{names[i]}.max_exp_avg_sq", st.MaxExpAvgSq);
            yield return KeyValuePair.Create($"optimizer.{names[i]}.step", tensor(st.GetStep()));
        }
        if (trainer.MasterWeights is { } masters)
            for (int i = 0; i < names.Count; i++) yield return KeyValuePair.Create($"master.{names[i]}", (Tensor)masters[i]);
        foreach (var stage in executor.Stages)
        {
            int index = stage.Model.FirstLayer;
            foreach (var layer in stage.Model.Layers)
            {
                if (layer.Moe is { } moe) yield return KeyValuePair.Create($"moe.layers.{index}.tokens_per_expert", moe.TokensPerExpert);
                index++;
            }
        }
        yield return KeyValuePair.Create(RngKey, random.get_rng_state());
    }

    private static SafetensorsFile OpenChecked(string folder, string file)
    {
        try
        {
            return SafetensorsFile.Open(Path.Combine(folder, file));
        }
        catch (InvalidDataException e)
        {
            throw TrainingCheckpointManifest.Invalid(folder, $"'{file}' is not a valid safetensors file ({e.Message})", e);
        }
    }

    /// <summary>The file must hold exactly the target keys plus <paramref name="extraKeys"/>, each target with its shape and dtype.</summary>
    private static void CheckFits(string folder, SafetensorsFile file, IReadOnlyDictionary<string, Tensor> targets, IReadOnlySet<string> extraKeys)
    {
        var fileName = Path.GetFileName(file.Path);
        foreach (var (key, into) in targets)
        {
            if (!file.Entries.TryGetValue(key, out var e)) throw
                Misfit(folder, fileName, key, "is missing (the checkpoint is of another model or trainer setup)");
            var dtype = SafetensorsDType.FromScalarType(into.dtype, key);
            if (e.DType != dtype || !e.Shape.SequenceEqual(into.shape))
                throw Misfit(folder, fileName, key, $"is {e.DType}{Shape(e.Shape)}; the model needs {dtype}{Shape(into.shape)}");
        }
        foreach (var key in extraKeys)
            if (!file.Entries.ContainsKey(key)) throw Misfit(folder, fileName, key, "is missing");
        var unknown = file.Entries.Keys.FirstOrDefault(k => !targets.ContainsKey(k) && !extraKeys.Contains(k));
        if (unknown is not null) throw
            Misfit(folder, fileName, unknown, "is not part of this model or trainer (the checkpoint is of another model or trainer setup)");
    }

    private static ArgumentException Misfit(string folder, string file, string key, string problem) =>
        new($"Training checkpoint '{folder}': tensor '{key}' in {file} {problem}.");

    private static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";

    private static void Copy(SafetensorsFile file, string key, Tensor into)
    {
        using var t = file.ReadTensor(key);
        into.copy_(t);
    }
}
