using System.Runtime.InteropServices;

namespace Microsoft.ML.Qwen3Moe.Tests;

/// <summary>
/// Peak of the bytes malloc has handed out and not yet freed while an action runs, on Linux/glibc: <c>mallinfo2()</c>'s
/// <c>uordblks + hblkhd</c>, summed by glibc over every arena and thread (libtorch's CPU tensors come from malloc). A
/// background thread samples it while the action runs and the growth of its maximum over the starting value is
/// returned. Unlike the resident set, this does not depend on what the allocator had cached from earlier tests. Other
/// threads (runtime, test runner) add noise of well under a MiB.
/// </summary>
internal static class PeakMemory
{
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, USmBlks, FSmBlks, UOrdBlks, FOrdBlks, KeepCost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 MallInfo();

    private static long InUseBytes()
    {
        var m = MallInfo();
        return (long)(m.UOrdBlks + m.HBlkHd);
    }

    /// <summary>Bytes by which malloc's in-use memory peaked above its starting value while <paramref name="action"/> ran.</summary>
    public static long Measure(Action action)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        long start = InUseBytes(), peak = start;
        var done = 0;
        var sampler = new Thread(() =>
        {
            while (Volatile.Read(ref done) == 0)
            {
                long now = InUseBytes();
                if (now > peak) peak = now;
                Thread.SpinWait(50);
            }
        }) { IsBackground = true, Priority = ThreadPriority.Highest };
        sampler.Start();
        try
        {
            action();
        }
        finally
        {
            Volatile.Write(ref done, 1);
            sampler.Join();
        }
        return Math.Max(peak, InUseBytes()) - start;
    }
}
