using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Range checks on token ids before they index a table (an out-of-range id on CUDA kills the context). The check reads
/// the ids' minimum and maximum on the host, so it belongs at the data boundary, while the ids are still host tensors
/// (free there): <see cref="CheckOnHost"/> is what the model calls on every forward, and it does nothing for ids that
/// already live on an accelerator, so the forward never waits for the device. Whoever moves host ids to a device calls
/// <see cref="Check"/> first.
/// </summary>
internal static class TokenIds
{
    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the offending id when one is outside [0, vocab). Reads the device once when <paramref name="ids"/> are not on the CPU.</summary>
    public static void Check(Tensor ids, long vocab)
    {
        if (ids.numel() == 0) return;
        using var scope = NewDisposeScope();
        var range = stack(new[] { ids.min(), ids.max() }).cpu().data<long>().ToArray();
        if (range[0] < 0 || range[1] >= vocab)
            throw new ArgumentOutOfRangeException(nameof(ids), $"Token id {(range[0] < 0 ? range[0] : range[1])} is outside the vocabulary [0, {vocab}).");
    }

    /// <summary><see cref="Check"/> for host (CPU) ids; a no-op for ids on an accelerator, which were checked (or built in range) before they moved.</summary>
    public static void CheckOnHost(Tensor ids, long vocab)
    {
        if (ids.device_type == DeviceType.CPU) Check(ids, vocab);
    }
}
