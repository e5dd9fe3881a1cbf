using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>Slices of a batch along dim 0: equal micro-batches moved to a stage's device (views when already there), and plain row ranges.</summary>
internal static class MicroBatchSlicer
{
    /// <summary>
    /// Micro-batch <paramref name="index"/> of <paramref name="batch"/>, of <paramref name="size"/> rows, with the tensors a stage
    /// needs: ids on the first stage, labels on the last, positions and masks everywhere.
    /// </summary>
    public static CausalLMBatch Slice(CausalLMBatch batch, int index, long size, Device device, bool first, bool last) => new()
    {
        InputIds = first ? Rows(batch.InputIds, index, size, device) : null,
        PositionIds = Rows(batch.PositionIds, index, size, device),
        AttentionMask = Rows(batch.AttentionMask, index, size, device),
        RightPadded = batch.RightPadded,
        HiddenStatesAggregationMask = Rows(batch.HiddenStatesAggregationMask, index, size, device),
        Labels = last ? Rows(batch.Labels, index, size, device) : null,
        ReturnLogits = last && batch.ReturnLogits,
    };

    /// <summary>Rows [start, start + count) of every tensor of <paramref name="batch"/> (views, same devices).</summary>
    public static CausalLMBatch Rows(CausalLMBatch batch, long start, long count)
    {
        Tensor? R(Tensor? t) => t?.narrow(0, start, count);
        return new CausalLMBatch
        {
            InputIds = R(batch.InputIds), HiddenStates = R(batch.HiddenStates), PositionIds = R(batch.PositionIds),
            AttentionMask = R(batch.AttentionMask), RightPadded = batch.RightPadded, Labels = R(batch.Labels), HiddenStatesSnapshot = batch.HiddenStatesSnapshot?.narrow(1, start, count),
            HiddenStatesAggregationMask = R(batch.HiddenStatesAggregationMask), ReturnLogits = batch.ReturnLogits, OutputHiddenStates = batch.OutputHiddenStates,
        };
    }

    private static Tensor? Rows(Tensor? t, int index, long size, Device device) => t?.narrow(0, index * size, size).to(device);
}
