using System.Globalization;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// The temporary folder a model zip is extracted into while it loads: <c>qwen3moe-load-{pid}-{random}</c> in the temp
/// folder, deleted when the load ends. A process killed mid-load cannot delete its folder, so each load first deletes
/// the folders of processes that no longer run (the pid in the name tells whose a folder is).
/// </summary>
internal static class LoadFolder
{
    /// <summary>Prefix of every load folder's name.</summary>
    public const string Prefix = "qwen3moe-load-";

    /// <summary>Deletes stale load folders, then creates this load's folder.</summary>
    public static DirectoryInfo Create()
    {
        CleanStale(Path.GetTempPath());
        return Directory.CreateTempSubdirectory($"{Prefix}{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-");
    }

    /// <summary>Deletes every load folder in <paramref name="tempRoot"/> whose process is gone (or, unnamed by pid, older than a day).</summary>
    public static void CleanStale(string tempRoot)
    {
        IEnumerable<string> folders;
        try
        {
            folders = Directory.EnumerateDirectories(tempRoot, Prefix + "*").ToList();
        }
        catch (IOException)
        {
            return;
        }
        catch (UnauthorizedAccessException)
        {
            return;
        }
        foreach (var folder in folders)
        {
            if (!IsStale(folder)) continue;
            try
            {
                Directory.Delete(folder, recursive: true);
            }
            catch (IOException)
            {
                // another process may be cleaning it too; the next load tries again
            }
            catch (UnauthorizedAccessException)
            {
                // someone else's folder
            }
        }
    }

    private static bool IsStale(string folder)
    {
        var rest = Path.GetFileName(folder)[Prefix.Length..];
        int dash = rest.IndexOf('-');
        if (dash > 0 && int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            return pid != Environment.ProcessId && !IsRunning(pid);
        return Directory.GetLastWriteTimeUtc(folder) < DateTime.UtcNow.AddDays(-1); // written by a build without the pid
    }

    private static bool IsRunning(int pid)
    {
        if (OperatingSystem.IsLinux()) return Directory.Exists($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}");
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
