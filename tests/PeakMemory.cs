using System.Runtime.InteropServices;

namespace Microsoft.ML.Qwen3Moe.Tests;

/// <summary>
/// Peak of the memory held in large blocks while an action runs, on Linux/glibc. glibc is told to give every block of
/// 64 KiB or more its own mapping, so every tensor buffer of that size is one mmap'd chunk, and <c>mallinfo2().hblkhd</c>
/// (bytes in mmap'd chunks, counted over all arenas and threads) is exactly the live large-block memory. A background
/// thread samples it while the action runs and the growth of its maximum over the starting value is returned. Unlike
/// the resident set, this does not depend on what the allocator had cached before; small blocks (under 64 KiB, from
/// the runtime and the test runner) are not counted.
/// </summary>
internal static class PeakMemory
{
    private const int MmapThreshold = -3; // M_MMAP_THRESHOLD

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, USmBlks, FSmBlks, UOrdBlks, FOrdBlks, KeepCost;
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int MallOpt(int parameter, int value);

    [DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 MallInfo();

    private static long LargeBlockBytes() => (long)MallInfo().HBlkHd;

    /// <summary>Bytes by which the live large-block memory peaked above its starting value while <paramref name="action"/> ran.</summary>
    public static long Measure(Action action)
    {
        MallOpt(MmapThreshold, 64 * 1024);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        long start = LargeBlockBytes(), peak = start;
        var done = 0;
        var sampler = new Thread(() =>
        {
            while (Volatile.Read(ref done) == 0)
            {
                long now = LargeBlockBytes();
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
        return Math.Max(peak, LargeBlockBytes()) - start;
    }
}
