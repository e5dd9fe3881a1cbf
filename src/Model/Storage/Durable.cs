using System.Runtime.InteropServices;

namespace Microsoft.ML.Qwen3Moe.Storage;

/// <summary>
/// Renames that survive a power loss: the one helper every atomic write of this library ends with (a file's content is
/// fsynced by its writer first, then it is renamed into place here, then the folder holding the new name is fsynced).
/// </summary>
/// <remarks>
/// A rename is a change of the folder, not of the file: until the folder itself is flushed (<c>fsync</c> on a descriptor
/// of the folder), a power loss can undo it even though the file's data is on disk. .NET has no API for that (it refuses
/// to open a folder as a file), so on Linux and macOS this opens the folder read-only through libc and fsyncs it. On
/// Windows NTFS journals the rename itself and folders cannot be opened this way, so there it is a no-op.
/// </remarks>
internal static partial class Durable
{
    private static readonly AsyncLocal<Action<string>?> s_observer = new();

    /// <summary>Renames file <paramref name="from"/> over <paramref name="to"/> (replacing it), then fsyncs the folder(s) involved.</summary>
    public static void MoveFile(string from, string to)
    {
        File.Move(from, to, overwrite: true);
        SyncFoldersOf(from, to);
    }

    /// <summary>Renames folder <paramref name="from"/> to <paramref name="to"/> (which must not exist), then fsyncs the folder(s) involved.</summary>
    public static void MoveFolder(string from, string to)
    {
        Directory.Move(from, to);
        SyncFoldersOf(from, to);
    }

    /// <summary>Flushes <paramref name="folder"/>'s entries (creations, renames, deletions) to disk.</summary>
    /// <exception cref="IOException">The folder cannot be opened or flushed; the message names it and the OS error.</exception>
    public static void SyncFolder(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
        {
            int fd = Open(full, 0 /* O_RDONLY */);
            if (fd < 0) throw Error("open", full);
            try
            {
                // EINVAL: the file system cannot sync folders (some network and FUSE mounts); nothing more can be done there
                if (Fsync(fd) != 0 && Marshal.GetLastPInvokeError() != 22) throw Error("fsync", full);
            }
            finally
            {
                _ = Close(fd);
            }
        }
        s_observer.Value?.Invoke(full);
    }

    /// <summary>Test hook: calls <paramref name="onSync"/> with each folder synced on this async flow until disposed.</summary>
    internal static IDisposable ObserveFolderSyncs(Action<string> onSync)
    {
        var previous = s_observer.Value;
        s_observer.Value = onSync;
        return new Restore(() => s_observer.Value = previous);
    }

    private static void SyncFoldersOf(string from, string to)
    {
        var target = Path.GetDirectoryName(Path.GetFullPath(to))!;
        var source = Path.GetDirectoryName(Path.GetFullPath(from))!;
        SyncFolder(target);
        if (!string.Equals(source, target, StringComparison.Ordinal)) SyncFolder(source);
    }

    private static IOException Error(string call, string folder)
    {
        int errno = Marshal.GetLastPInvokeError();
        return new IOException($"Could not {call} folder '{folder}' to make a rename durable: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}
