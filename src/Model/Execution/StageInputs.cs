using Microsoft.ML.Qwen3Moe.Blocks;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>Moves a batch's tensors to a stage's device (no copy when already there).</summary>
internal static class StageInputs
{
    /// <summary>
    /// Range-checks host token ids and labels against the vocabulary before any of them moves to a device (an
    /// out-of-range id on CUDA kills the context; on the host the check is free, on the device it would stall the
    /// launch queue). Every executor entry point calls it.
    /// </summary>
    public static void CheckTokenIds(CausalLMBatch b, Qwen3MoeForCausalLM first)
    {
        long vocab = first.Parameters.Model.VocabSize;
        if (b.InputIds is not null && b.InputIds.dtype == ScalarType.Int64) TokenIds.CheckOnHost(b.InputIds, vocab); // other dtypes: the model's batch check names them
        if (b.Labels is not null) CausalLMBatchCheck.LabelRange(b.Labels, vocab);
    }

    public static CausalLMBatch ToDevice(CausalLMBatch b, Device device) => b.Map(t => t.to(device));
}
