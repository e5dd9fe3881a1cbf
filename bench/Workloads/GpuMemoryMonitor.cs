using System.Runtime.InteropServices;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// Peak GPU memory as the driver sees it (TorchSharp has no CUDA memory statistics): NVML's
/// <c>nvmlDeviceGetMemoryInfo</c> used bytes per device, sampled every millisecond on a background thread, minus the
/// used bytes before this process touched the device. That is this process's CUDA context plus everything PyTorch's
/// caching allocator has reserved (the allocator never returns memory on its own, so the peak of the reserve is also its
/// last value). Compare it with <c>torch.cuda.max_memory_reserved()</c> plus a context, not with <c>max_memory_allocated()</c>.
/// Assumes CUDA device i is NVML device i (no <c>CUDA_VISIBLE_DEVICES</c> reordering) and a GPU used by this process only.
/// </summary>
internal sealed class GpuMemoryMonitor : IDisposable
{
    private const string Nvml = "libnvidia-ml.so.1";

    [StructLayout(LayoutKind.Sequential)]
    private struct NvmlMemory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    [DllImport(Nvml, EntryPoint = "nvmlInit_v2")]
    private static extern int NvmlInit();

    [DllImport(Nvml, EntryPoint = "nvmlDeviceGetHandleByIndex_v2")]
    private static extern int NvmlDeviceGetHandleByIndex(uint index, out IntPtr device);

    [DllImport(Nvml, EntryPoint = "nvmlDeviceGetMemoryInfo")]
    private static extern int NvmlDeviceGetMemoryInfo(IntPtr device, out NvmlMemory memory);

    private readonly IntPtr[] _devices;
    private readonly ulong[] _baseline;
    private readonly long[] _peak;
    private readonly Thread _thread;
    private volatile bool _stop;

    private GpuMemoryMonitor(IntPtr[] devices)
    {
        _devices = devices;
        _baseline = devices.Select(Used).ToArray();
        _peak = new long[devices.Length];
        _thread = new Thread(Sample) { IsBackground = true, Name = "nvml-sampler" };
        _thread.Start();
    }

    /// <summary>
    /// Starts sampling devices 0..<paramref name="count"/>-1; null when NVML is not there (no NVIDIA driver). Call
    /// before the first CUDA tensor.
    /// </summary>
    public static GpuMemoryMonitor? TryStart(int count)
    {
        try
        {
            if (NvmlInit() != 0) return null;
            var devices = new IntPtr[count];
            for (int i = 0; i < count; i++)
                if (NvmlDeviceGetHandleByIndex((uint)i, out devices[i]) != 0) return null;
            return new GpuMemoryMonitor(devices);
        }
        catch (DllNotFoundException)
        {
            return null;
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Bytes used on device <paramref name="index"/> now, above the baseline.</summary>
    public long Current(int index) => (long)(Used(_devices[index]) - Math.Min(_baseline[index], Used(_devices[index])));

    /// <summary>Highest bytes used on device <paramref name="index"/> above the baseline since the last <see cref="ResetPeak"/>.</summary>
    public long Peak(int index)
    {
        Observe();
        return Interlocked.Read(ref _peak[index]);
    }

    /// <summary>Starts a new peak window at the current usage.</summary>
    public void ResetPeak()
    {
        for (int i = 0; i < _devices.Length; i++) Interlocked.Exchange(ref _peak[i], Current(i));
    }

    private static ulong Used(IntPtr device) => NvmlDeviceGetMemoryInfo(device, out var m) == 0 ? m.Used : 0;

    private void Observe()
    {
        for (int i = 0; i < _devices.Length; i++)
        {
            long now = Current(i);
            long seen;
            while (now > (seen = Interlocked.Read(ref _peak[i])) && Interlocked.CompareExchange(ref _peak[i], now, seen) != seen)
            {
            }
        }
    }

    private void Sample()
    {
        while (!_stop)
        {
            Observe();
            Thread.Sleep(1);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stop = true;
        _thread.Join();
    }
}
