namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>
/// Writes a file so that readers see either its previous content or the complete new content, never a partial file.
/// </summary>
/// <remarks>
/// The content goes to a uniquely named hidden temp file in the same folder (so the final rename stays on one file
/// system), is flushed to disk (<c>fsync</c>), then renamed over the target. If writing throws, the temp file is
/// deleted and the target is untouched. The parent folder itself is not fsynced, so after a power loss the rename may
/// be undone, which still leaves the previous complete file.
/// </remarks>
internal static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> with what <paramref name="write"/> puts into the stream it is given.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var fullPath = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(fullPath) ?? throw new ArgumentException($"'{path}' has no parent folder.", nameof(path));
        Directory.CreateDirectory(folder);
        var temp = Path.Combine(folder, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, fullPath, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
