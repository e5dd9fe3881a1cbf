using Microsoft.ML.Qwen3Moe.Checkpoints;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Pipelining;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Runtime;

/// <summary>Builds the pipeline stages of one model, each on its device, from a Hugging Face folder or a seeded random init.</summary>
internal static class ModelStages
{
    /// <summary>
    /// One <see cref="Qwen3MoeForCausalLM"/> per device (stage i of n). Weights come from <paramref name="weightsFolder"/>
    /// when given, else from <see cref="Qwen3MoeForCausalLM.InitializeWeights"/> with <paramref name="seed"/> (the same
    /// weights for any split into stages). On failure the stages built so far are disposed.
    /// </summary>
    public static Qwen3MoeForCausalLM[] Build(Qwen3MoeForCausalLMParameters parameters, string? weightsFolder, long seed, IReadOnlyList<Device> devices, ScalarType dtype)
    {
        int n = devices.Count;
        if (weightsFolder is not null) HuggingFaceCheckpoint.CheckAgainstConfig(parameters, weightsFolder); // before anything is allocated
        var stages = new List<Qwen3MoeForCausalLM>(n);
        try
        {
            for (int i = 0; i < n; i++)
            {
                var stage = new Qwen3MoeForCausalLM(parameters, new PipelineStageInfo(i, n), devices[i], dtype);
                stages.Add(stage);
                if (weightsFolder is not null) HuggingFaceCheckpoint.LoadWeights(stage, weightsFolder);
                else stage.InitializeWeights(seed);
            }
            return stages.ToArray();
        }
        catch
        {
            foreach (var s in stages) s.Dispose();
            throw;
        }
    }
}
