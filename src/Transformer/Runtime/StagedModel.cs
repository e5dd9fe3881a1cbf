using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Pipelining;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Runtime;

/// <summary>
/// The pipeline stages of one model, each on its device, with the executor that runs them: the one owner of both, so
/// that whoever holds a model (the estimator while it trains, then the transformer) disposes it with one call.
/// </summary>
internal sealed class StagedModel : IDisposable
{
    private StagedModel(Qwen3MoeForCausalLM[] stages, IStepExecutor executor)
    {
        Stages = stages;
        Executor = executor;
    }

    /// <summary>The stages, first to last.</summary>
    public Qwen3MoeForCausalLM[] Stages { get; }

    /// <summary>Runs <see cref="Stages"/> (does not own them: this object does).</summary>
    public IStepExecutor Executor { get; }

    /// <summary>
    /// One <see cref="Qwen3MoeForCausalLM"/> per device (stage i of n) and the executor that
    /// <see cref="StepExecutorFactory"/> picks for them. Weights come from <paramref name="weightsFolder"/> when given,
    /// else from <see cref="Qwen3MoeForCausalLM.InitializeWeights"/> with <paramref name="seed"/> (the same weights for
    /// any split into stages), with the kernel choices <paramref name="kernels"/> (default <see cref="KernelOptions.Default"/>).
    /// On failure whatever was built is disposed.
    /// </summary>
    public static StagedModel Build(Qwen3MoeForCausalLMParameters parameters, string? weightsFolder, long seed, IReadOnlyList<Device> devices,
        ScalarType dtype, PipelineScheduleKind schedule = PipelineScheduleKind.GPipe, int microBatches = 1, bool activationCheckpointing = false,
        KernelOptions? kernels = null)
    {
        int n = devices.Count;
        if (weightsFolder is not null) HuggingFaceCheckpoint.CheckAgainstConfig(parameters, weightsFolder); // before anything is allocated
        var stages = new List<Qwen3MoeForCausalLM>(n);
        try
        {
            for (int i = 0; i < n; i++)
            {
                var stage = new Qwen3MoeForCausalLM(parameters, new PipelineStageInfo(i, n), devices[i], dtype, enableCheckpointing: activationCheckpointing,
                    kernels: kernels);
                stages.Add(stage);
                if (weightsFolder is not null) HuggingFaceCheckpoint.LoadWeights(stage, weightsFolder);
                else stage.InitializeWeights(seed);
            }
            return new StagedModel(stages.ToArray(), StepExecutorFactory.Create(stages, schedule, microBatches));
        }
        catch
        {
            foreach (var s in stages) s.Dispose();
            throw;
        }
    }

    /// <summary>Takes ownership of stages built elsewhere and of the executor that runs them.</summary>
    public static StagedModel Own(Qwen3MoeForCausalLM[] stages, IStepExecutor executor) => new(stages, executor);

    /// <summary>Disposes the executor, then every stage.</summary>
    public void Dispose()
    {
        Executor.Dispose();
        foreach (var s in Stages) s.Dispose();
    }
}
