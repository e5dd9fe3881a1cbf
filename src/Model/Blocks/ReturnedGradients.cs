using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Keeps the managed handles of the gradients a custom autograd function returned until the next backward call on the
/// same thread: libtorch copies them when the callback returns, so they can then be released deterministically instead
/// of waiting for the garbage collector (autograd may run callbacks on its own device threads, outside any dispose scope).
/// </summary>
internal static class ReturnedGradients
{
    [ThreadStatic] private static List<Tensor>? _held;

    /// <summary>Releases the previously returned gradients of this thread and holds <paramref name="gradients"/>; returns them.</summary>
    public static List<Tensor> Hold(List<Tensor> gradients)
    {
        if (_held is not null)
            foreach (var g in _held) g?.Dispose();
        foreach (var g in gradients) g?.DetachFromDisposeScope();
        _held = gradients;
        return gradients;
    }
}
