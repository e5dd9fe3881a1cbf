using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Runtime;

/// <summary>
/// Where the model runs, following ML.NET's TorchSharp convention (<c>TorchUtils.InitializeDevice</c>): CUDA only when
/// <see cref="MLContext.GpuDeviceId"/> is set and that device exists, otherwise the CPU; when a GPU is asked for but
/// missing, <see cref="MLContext.FallbackToCpu"/> decides between the CPU (with a warning) and a clear error. Unlike
/// ML.NET, the device index is honoured. Explicit per-stage devices override the context.
/// </summary>
internal static class DevicePolicy
{
    /// <summary>
    /// The GPU settings of an environment: read from <see cref="MLContext"/> directly, or (for the environment ML.NET
    /// passes to a model loader, whose settings interface is internal) from its public <c>GpuDeviceId</c> and
    /// <c>FallbackToCpu</c> properties; none found means the CPU.
    /// </summary>
    public static (int? GpuDeviceId, bool FallbackToCpu) SettingsOf(IHostEnvironment env)
    {
        if (env is MLContext context) return (context.GpuDeviceId, context.FallbackToCpu);
        var type = env.GetType();
        var gpu = type.GetProperty(nameof(MLContext.GpuDeviceId))?.GetValue(env) as int?;
        var fallback = type.GetProperty(nameof(MLContext.FallbackToCpu))?.GetValue(env) as bool? ?? false;
        return (gpu, fallback);
    }

    /// <summary>The device the environment asks for, and a warning when it fell back to the CPU.</summary>
    /// <exception cref="InvalidOperationException">A GPU was asked for, none is usable, and FallbackToCpu is false.</exception>
    public static (Device Device, string? Warning) Resolve(IHostEnvironment env)
    {
        var (gpu, fallback) = SettingsOf(env);
        if (gpu is not int id) return (CPU, null);
        if (id < 0) throw new ArgumentOutOfRangeException(nameof(env), id, $"MLContext.GpuDeviceId = {id}: must not be negative.");
        return Cuda(id, fallback, $"MLContext.GpuDeviceId = {id}");
    }

    /// <summary>
    /// One device per pipeline stage: <paramref name="stageDevices"/> (TorchSharp device strings such as "cpu" or
    /// "cuda:1") when given, else the environment's device for every stage.
    /// </summary>
    public static (Device[] Devices, List<string> Warnings) ResolveStages(IHostEnvironment env, IReadOnlyList<string>? stageDevices, int numStages)
    {
        var warnings = new List<string>();
        if (stageDevices is null)
        {
            var (device, warning) = Resolve(env);
            if (warning is not null) warnings.Add(warning);
            return (Enumerable.Repeat(device, numStages).ToArray(), warnings);
        }
        if (stageDevices.Count != numStages)
            throw new ArgumentOutOfRangeException(nameof(stageDevices), stageDevices.Count,
                $"StageDevices names {stageDevices.Count} device(s) for {numStages} pipeline stage(s); give one per stage.");
        var fallback = SettingsOf(env).FallbackToCpu;
        var devices = new Device[numStages];
        for (int i = 0; i < numStages; i++)
        {
            Device parsed;
            try
            {
                parsed = torch.device(stageDevices[i]);
            }
            catch (Exception e) when (e is ArgumentException or FormatException)
            {
                throw new ArgumentOutOfRangeException(nameof(stageDevices), stageDevices[i],
                    $"StageDevices[{i}] = '{stageDevices[i]}' is not a device (use \"cpu\" or \"cuda:N\").");
            }
            if (parsed.type == DeviceType.CUDA)
            {
                var (device, warning) = Cuda(Math.Max(parsed.index, 0), fallback, $"StageDevices[{i}] = '{stageDevices[i]}'");
                if (warning is not null) warnings.Add(warning);
                parsed = device;
            }
            devices[i] = parsed;
        }
        return (devices, warnings);
    }

    private static (Device, string?) Cuda(int index, bool fallbackToCpu, string what)
    {
        bool available = torch.cuda.is_available();
        int count = available ? torch.cuda.device_count() : 0;
        if (index < count) return (new Device(DeviceType.CUDA, index), null);
        string problem = available ? $"only {count} CUDA device(s) exist" : "CUDA is not available (no GPU, or the CUDA build of libtorch is not referenced)";
        if (fallbackToCpu) return (CPU, $"{what} but {problem}; running on the CPU (MLContext.FallbackToCpu is true).");
        throw new InvalidOperationException($"{what} but {problem}, and MLContext.FallbackToCpu is false. Set FallbackToCpu = true to run on the CPU, or " +
            $"install the CUDA libtorch package.");
    }
}
