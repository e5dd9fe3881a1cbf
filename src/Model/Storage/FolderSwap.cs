using System.Text.RegularExpressions;

namespace Microsoft.ML.Qwen3Moe.Storage;

/// <summary>
/// Replaces a whole folder atomically: the new content is written into a hidden sibling staging folder, then swapped in
/// by renames; also deletes folders without ever leaving a partial one under their name, and cleans up what a killed
/// process left half-way.
/// </summary>
/// <remarks>
/// Hidden siblings are named <c>.name.pid-guid.tmp</c> (staging), <c>.name.pid-guid.old</c> (the replaced folder,
/// between the two renames of a swap) and <c>.name.pid-guid.del</c> (a folder being deleted). The pid tells whether
/// the process that made one is still running (<see cref="OwnerStamp"/>), so <see cref="RemoveLeftovers"/> never touches
/// the work of a live process.
/// </remarks>
internal static partial class FolderSwap
{
    /// <summary>Creates an empty hidden staging folder beside <paramref name="full"/> (same file system, so the swap is a rename).</summary>
    public static string CreateStaging(string full)
    {
        var staging = Sibling(full, "tmp");
        Directory.CreateDirectory(staging);
        return staging;
    }

    /// <summary>
    /// Moves the complete folder <paramref name="staging"/> to <paramref name="full"/>, replacing any folder there by two
    /// renames, then fsyncs the parent folder and deletes the replaced one. A crash at any point leaves either the old
    /// or the new complete folder at <paramref name="full"/>, or (between the two renames) nothing there and both complete
    /// folders beside it as hidden <c>.old</c>/<c>.tmp</c> siblings, which <see cref="RemoveLeftovers"/> resolves by
    /// putting the old one back. If this method throws, the staging folder is removed and the old folder is where it was.
    /// </summary>
    public static void SwapIn(string full, string staging)
    {
        var parent = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(full))
        {
            try
            {
                Directory.Move(staging, full);
            }
            catch
            {
                Directory.Delete(staging, recursive: true);
                throw;
            }
            Durable.SyncFolder(parent);
            return;
        }
        var old = Sibling(full, "old");
        try
        {
            Directory.Move(full, old);
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
        try
        {
            Directory.Move(staging, full);
        }
        catch
        {
            Directory.Move(old, full);
            Directory.Delete(staging, recursive: true);
            throw;
        }
        Durable.SyncFolder(parent);
        Directory.Delete(old, recursive: true);
    }

    /// <summary>Renames <paramref name="folder"/> to a hidden <c>.del</c> sibling (atomic), then deletes it.</summary>
    public static void Delete(string folder)
    {
        var hidden = Sibling(folder, "del");
        Durable.MoveFolder(folder, hidden);
        Directory.Delete(hidden, recursive: true);
    }

    /// <summary>
    /// Resolves the hidden siblings in <paramref name="parent"/> of the folders named as <paramref name="isOurs"/> accepts,
    /// left by processes that have ended: a staging (<c>.tmp</c>) or half-deleted (<c>.del</c>) folder is removed; a
    /// replaced folder (<c>.old</c>) is renamed back when nothing is under its name (the swap was killed between its two
    /// renames), otherwise removed. Each action is reported to <paramref name="log"/>.
    /// </summary>
    public static void RemoveLeftovers(string parent, Func<string, bool> isOurs, Action<string>? log)
    {
        if (!Directory.Exists(parent)) return;
        foreach (var dir in Directory.EnumerateDirectories(parent, ".*"))
        {
            var m = LeftoverPattern().Match(Path.GetFileName(dir));
            if (!m.Success || !isOurs(m.Groups["name"].Value) || new DirectoryInfo(dir).LinkTarget is not null) continue;
            if (m.Groups["pid"].Success && !OwnerStamp.IsAbandoned(m.Groups["pid"].Value)) continue;
            var final = Path.Combine(parent, m.Groups["name"].Value);
            if (m.Groups["kind"].Value == "old" && !Directory.Exists(final) && !File.Exists(final))
            {
                Durable.MoveFolder(dir, final);
                log?.Invoke($"Put back '{final}' from an interrupted replacement.");
                continue;
            }
            Directory.Delete(dir, recursive: true);
            log?.Invoke($"Removed leftover '{dir}'.");
        }
    }

    private static string Sibling(string full, string kind) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{OwnerStamp.New()}.{kind}");

    // pid optional: leftovers of versions that did not stamp it count as abandoned
    [GeneratedRegex(@"^\.(?<name>.+)\.(?:(?<pid>[0-9]{1,10})-)?[0-9a-f]{32}\.(?<kind>tmp|old|del)$", RegexOptions.CultureInvariant)]
    private static partial Regex LeftoverPattern();
}
