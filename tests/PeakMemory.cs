using System.Runtime.InteropServices;

namespace Microsoft.ML.Qwen3Moe.Tests;

/// <summary>
/// Peak resident memory of an action on Linux: glibc is told to give every block of 64 KiB or more its own mapping
/// (returned to the OS when freed, so RSS follows live tensors instead of the allocator's cache), the kernel's peak
/// counter is reset (<c>/proc/self/clear_refs</c> 5), and the growth of <c>VmHWM</c> over the starting <c>VmRSS</c> is returned.
/// Other threads (GC, test runner) add noise of a few MiB, so assertions need a margin much larger than that.
/// </summary>
internal static class PeakMemory
{
    private const int MmapThreshold = -3; // M_MMAP_THRESHOLD

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int MallOpt(int parameter, int value);

    /// <summary>Bytes by which the peak resident set grew while <paramref name="action"/> ran.</summary>
    public static long Measure(Action action)
    {
        MallOpt(MmapThreshold, 64 * 1024);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        File.WriteAllText("/proc/self/clear_refs", "5");
        long start = StatusKiB("VmRSS");
        action();
        return (StatusKiB("VmHWM") - start) * 1024;
    }

    private static long StatusKiB(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
    }
}
