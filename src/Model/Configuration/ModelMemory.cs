using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Configuration;

/// <summary>
/// The check made before a model (stage) is allocated: its weights' bytes, computed from the shapes, against the memory
/// the target device has, so an oversized config fails with a message instead of a native abort.
/// </summary>
/// <remarks>
/// Available memory: on the CPU, the smaller of Linux's <c>MemAvailable</c> and the process's limit as .NET sees it
/// (a container's limit included); on CUDA nothing is checked, as TorchSharp 0.107 exposes no free-memory query.
/// The check counts the weights only; training needs more (gradients, optimizer state, activations).
/// </remarks>
internal static class ModelMemory
{
    /// <summary>Bytes of <paramref name="parameters"/> weights of <paramref name="dtype"/>.</summary>
    public static long WeightBytes(long parameters, ScalarType dtype) => checked(parameters * dtype switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8L,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2L,
        ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1L,
        _ => 4L,
    });

    /// <summary>Throws when <paramref name="neededBytes"/> exceed <paramref name="availableBytes"/> (null: unknown, nothing checked).</summary>
    /// <exception cref="InsufficientMemoryException">The weights do not fit; the message says how much is needed and how much there is.</exception>
    public static void Check(long neededBytes, long? availableBytes, string what, string device)
    {
        if (availableBytes is { } available && neededBytes > available)
        {
            throw new InsufficientMemoryException(
                $"{what} needs {Describe(neededBytes)} for its weights alone, but {device} has {Describe(available)} available. " +
                "Use a smaller config, a lower precision, or more pipeline stages / a device with more memory.");
        }
    }

    /// <summary>Checks one model stage of <paramref name="p"/> in <paramref name="dtype"/> against <paramref name="device"/>'s memory.</summary>
    /// <inheritdoc cref="Check(long, long?, string, string)" path="/exception"/>
    public static void CheckFits(Qwen3MoeForCausalLMParameters p, Pipelining.PipelineStageInfo stage, Device? device, ScalarType dtype)
    {
        var target = device ?? CPU;
        long parameters = ParameterCount.OfStage(p, stage);
        string what = stage.NumStages == 1
            ? $"The model ({parameters:N0} parameters in {dtype})"
            : $"Pipeline stage {stage.CurrentStage} of {stage.NumStages} ({parameters:N0} parameters in {dtype})";
        Check(WeightBytes(parameters, dtype), Available(target), what, target.type == DeviceType.CPU ? "the CPU" : target.ToString());
    }

    /// <summary>Bytes available on <paramref name="device"/>, or null where it cannot be known.</summary>
    public static long? Available(Device device)
    {
        if (device.type != DeviceType.CPU) return null;
        long limit = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return MemAvailable() is { } free ? Math.Min(free, limit) : limit;
    }

    private static long? MemAvailable()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return parts.Length >= 2 && long.TryParse(parts[1], out var kb) ? kb * 1024 : null;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }

    private static string Describe(long bytes) => bytes >= 1L << 30
        ? $"{bytes / (double)(1L << 30):0.##} GiB ({bytes:N0} bytes)"
        : $"{bytes / (double)(1L << 20):0.##} MiB ({bytes:N0} bytes)";
}
