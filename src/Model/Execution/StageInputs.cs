using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>Moves a batch's tensors to a stage's device (no copy when already there).</summary>
internal static class StageInputs
{
    public static CausalLMBatch ToDevice(CausalLMBatch b, Device device) => new()
    {
        InputIds = b.InputIds?.to(device),
        HiddenStates = b.HiddenStates?.to(device),
        PositionIds = b.PositionIds?.to(device),
        AttentionMask = b.AttentionMask?.to(device),
        Labels = b.Labels?.to(device),
        ReturnLogits = b.ReturnLogits,
        OutputHiddenStates = b.OutputHiddenStates,
        HiddenStatesSnapshot = b.HiddenStatesSnapshot?.to(device),
        HiddenStatesAggregationMask = b.HiddenStatesAggregationMask?.to(device),
    };
}
