using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Autograd;

/// <summary>
/// Keeps the managed handles of the gradients a custom autograd function returned (autograd may run the callbacks on
/// its own device threads, outside any dispose scope; libtorch has its own reference once the callback returns). They
/// are released by <see cref="ReleaseAll"/>, which the executors call as soon as a backward pass has finished, so a
/// large gradient (the LM head's [V,H]) is not kept alive into the optimizer step; a thread's next backward also
/// releases what that thread held, for callers that run backward themselves.
/// </summary>
internal static class ReturnedGradients
{
    private static readonly ConcurrentBag<List<Tensor>> AllThreads = new();
    private static readonly ThreadLocal<List<Tensor>> Held = new(() =>
    {
        var list = new List<Tensor>();
        AllThreads.Add(list);
        return list;
    });

    /// <summary>Releases the previously returned gradients of this thread and holds <paramref name="gradients"/>; returns them.</summary>
    public static List<Tensor> Hold(List<Tensor> gradients)
    {
        var held = Held.Value!;
        lock (held)
        {
            Release(held);
            foreach (var g in gradients)
            {
                if (g is null) continue;
                g.DetachFromDisposeScope();
                held.Add(g);
            }
        }
        return gradients;
    }

    /// <summary>Releases every held gradient handle of every thread. Call only when no backward pass is running.</summary>
    public static void ReleaseAll()
    {
        foreach (var list in AllThreads)
            lock (list) Release(list);
    }

    /// <summary>Gradient handles currently held, over all threads.</summary>
    public static int HeldCount => AllThreads.Sum(l => { lock (l) return l.Count; });

    private static void Release(List<Tensor> list)
    {
        foreach (var g in list) g.Dispose();
        list.Clear();
    }
}
