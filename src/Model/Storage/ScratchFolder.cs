using System.Text.RegularExpressions;

namespace Microsoft.ML.Qwen3Moe.Storage;

/// <summary>
/// A private folder under the system temp folder (<see cref="Path.GetTempPath"/>, i.e. <c>$TMPDIR</c> or <c>/tmp</c>),
/// named <c>prefix</c>-<c>pid</c>-<c>guid</c> and deleted on dispose. Creating one first removes the folders of the
/// same prefix left by processes that have ended (killed mid-save), so they never pile up.
/// </summary>
internal sealed class ScratchFolder : IDisposable
{
    private ScratchFolder(string path) => Path = path;

    /// <summary>The folder's full path.</summary>
    public string Path { get; }

    /// <summary>Removes stale folders of <paramref name="prefix"/> (e.g. <c>qwen3moe-save</c>), then creates a new one.</summary>
    public static ScratchFolder Create(string prefix)
    {
        var root = System.IO.Path.GetTempPath();
        RemoveStale(root, prefix);
        var path = System.IO.Path.Combine(root, $"{prefix}-{OwnerStamp.New()}");
        Directory.CreateDirectory(path);
        return new ScratchFolder(path);
    }

    /// <summary>Deletes the folders named <c>prefix-pid-guid</c> in <paramref name="root"/> whose process has ended.</summary>
    internal static void RemoveStale(string root, string prefix)
    {
        if (!Directory.Exists(root)) return;
        var pattern = new Regex($"^{Regex.Escape(prefix)}-{OwnerStamp.Pattern}$", RegexOptions.CultureInvariant);
        foreach (var dir in Directory.EnumerateDirectories(root, prefix + "-*"))
        {
            var m = pattern.Match(System.IO.Path.GetFileName(dir));
            if (!m.Success || !OwnerStamp.IsAbandoned(m.Groups["pid"].Value)) continue;
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
                // another process is removing it too, or it is not ours to remove: leave it
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    /// <summary>Deletes the folder and everything in it.</summary>
    public void Dispose()
    {
        if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
    }
}
