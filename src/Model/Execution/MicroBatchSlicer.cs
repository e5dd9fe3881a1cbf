using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>Slices of a batch along dim 0: equal micro-batches moved to a stage's device (views when already there), and plain row ranges.</summary>
internal static class MicroBatchSlicer
{
    /// <summary>
    /// Micro-batch <paramref name="index"/> of <paramref name="batch"/>, of <paramref name="size"/> rows, on
    /// <paramref name="device"/>, with the tensors a stage needs: ids on the first stage, labels on the last, positions and
    /// masks everywhere (hidden states come from the previous stage).
    /// </summary>
    public static CausalLMBatch Slice(CausalLMBatch batch, int index, long size, Device device, bool first, bool last) =>
        (batch with
        {
            InputIds = first ? batch.InputIds : null,
            Labels = last ? batch.Labels : null,
            HiddenStates = null,
            HiddenStatesSnapshot = null,
            ReturnLogits = last && batch.ReturnLogits,
            OutputHiddenStates = false,
        }).Map(t => t.narrow(0, index * size, size).to(device));

    /// <summary>Rows [start, start + count) of every tensor of <paramref name="batch"/> (views, same devices).</summary>
    public static CausalLMBatch Rows(CausalLMBatch batch, long start, long count) =>
        batch.Map(t => t.narrow(0, start, count), snapshot => snapshot.narrow(1, start, count));
}
