using System.Text.RegularExpressions;

namespace Microsoft.ML.Qwen3Moe.Storage;

/// <summary>
/// Writes a file so that readers see either its previous content or the complete new content, never a partial file.
/// </summary>
/// <remarks>
/// The content goes to a hidden temp file in the same folder (so the final rename stays on one file system), named
/// <c>.name.pid-guid.tmp</c>, is flushed to disk (<c>fsync</c>), then renamed over the target and the folder is fsynced
/// (<see cref="Durable"/>), so the new file also survives a power loss. If writing throws (a full disk, a failing
/// source), the temp file is deleted and the target is untouched. Temp files of the same target left by a killed
/// process are removed by the next write.
/// </remarks>
internal static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> with what <paramref name="write"/> puts into the stream it is given.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var fullPath = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(fullPath) ?? throw new ArgumentException($"'{path}' has no parent folder.", nameof(path));
        var name = Path.GetFileName(fullPath);
        Directory.CreateDirectory(folder);
        RemoveStaleTemps(folder, name);
        var temp = Path.Combine(folder, $".{name}.{OwnerStamp.New()}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            Durable.MoveFile(temp, fullPath);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Deletes the temp files of <paramref name="name"/> in <paramref name="folder"/> left by processes that have ended.</summary>
    private static void RemoveStaleTemps(string folder, string name)
    {
        var pattern = new Regex($@"^\.{Regex.Escape(name)}\.{OwnerStamp.Pattern}\.tmp$", RegexOptions.CultureInvariant);
        foreach (var file in Directory.EnumerateFiles(folder, $".{name}.*.tmp"))
        {
            var m = pattern.Match(Path.GetFileName(file));
            if (m.Success && OwnerStamp.IsAbandoned(m.Groups["pid"].Value)) File.Delete(file);
        }
    }
}
