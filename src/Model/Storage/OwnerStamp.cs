using System.Diagnostics;
using System.Globalization;

namespace Microsoft.ML.Qwen3Moe.Storage;

/// <summary>
/// The <c>pid-guid</c> stamp in the name of every temp file or folder this library writes, so that leftovers of a killed
/// process can be told from the work in progress of a live one and removed safely.
/// </summary>
internal static class OwnerStamp
{
    /// <summary>The pattern of a stamp inside a larger regex (group <c>pid</c>).</summary>
    public const string Pattern = @"(?<pid>[0-9]{1,10})-[0-9a-f]{32}";

    /// <summary>A new stamp of this process.</summary>
    public static string New() => $"{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-{Guid.NewGuid():N}";

    /// <summary>Whether the process <paramref name="pid"/> (as text) has ended, so what it left behind is stale.</summary>
    public static bool IsAbandoned(string pid)
    {
        if (!int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int id)) return true;
        if (id == Environment.ProcessId) return false;
        if (OperatingSystem.IsLinux()) return !Directory.Exists($"/proc/{id}");
        try
        {
            using var process = Process.GetProcessById(id);
            return process.HasExited;
        }
        catch (ArgumentException)
        {
            return true;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }
}
