using System.Runtime.InteropServices;

// Compiled into two assemblies (source-linked, as dotnet/runtime shares its Common files): the model library, and the
// tokenizer assembly, which references no other assembly of ours.
#if QWEN3MOE_TOKENIZATION
namespace Microsoft.ML.Qwen3Moe.Tokenization;
#else
namespace Microsoft.ML.Qwen3Moe.Safetensors;
#endif

/// <summary>
/// The one way this library opens a model, config or tokenizer file it did not write: only a regular file (a symlink
/// to one is fine), checked before the open, and read with a size cap where the whole file is read.
/// </summary>
/// <remarks>
/// Opening a FIFO for reading blocks until a writer appears, and a character device such as <c>/dev/zero</c> never
/// ends, so a file named <c>model.safetensors</c> or <c>config.json</c> of either kind would hang the load or read
/// until memory runs out. .NET reports no file type beyond "directory", so on Linux the type comes from <c>stat(2)</c>
/// (glibc 2.33 or later exports it; x64 and arm64 layouts); elsewhere only directories are refused.
/// </remarks>
internal static class RegularFile
{
    private const uint FileTypeMask = 0xF000;    // S_IFMT
    private const uint RegularFileType = 0x8000; // S_IFREG

    /// <summary>Throws unless <paramref name="path"/> names an existing regular file.</summary>
    /// <exception cref="FileNotFoundException">Nothing exists at <paramref name="path"/>.</exception>
    /// <exception cref="IOException">It exists but is a directory, FIFO, device or socket; the message names the path and kind.</exception>
    public static void Require(string path)
    {
        if (Directory.Exists(path)) throw new IOException($"'{path}' is a directory, not a regular file.");
        if (!File.Exists(path)) throw new FileNotFoundException($"File '{path}' does not exist.", path);
        if (ModeOf(path) is { } mode && (mode & FileTypeMask) != RegularFileType)
            throw new IOException($"'{path}' is a {KindOf(mode)}, not a regular file; only regular files are read.");
    }

    /// <summary>Opens a regular file for sequential reading.</summary>
    /// <inheritdoc cref="Require" path="/exception"/>
    public static FileStream OpenRead(string path)
    {
        Require(path);
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1 << 16, FileOptions.SequentialScan);
    }

    /// <summary>Reads a whole regular file of at most <paramref name="maxBytes"/> bytes.</summary>
    /// <exception cref="InvalidDataException">The file is larger than <paramref name="maxBytes"/>; the message names it and both sizes.</exception>
    /// <inheritdoc cref="Require" path="/exception"/>
    public static byte[] ReadAllBytes(string path, long maxBytes)
    {
        using var stream = OpenRead(path);
        long length = stream.Length;
        if (length > maxBytes) throw TooLarge(path, length, maxBytes);
        var bytes = new byte[length];
        stream.ReadExactly(bytes);
        if (stream.ReadByte() >= 0) throw TooLarge(path, length + 1, maxBytes); // grew while read: refuse rather than read on
        return bytes;
    }

    private static InvalidDataException TooLarge(string path, long length, long maxBytes) =>
        new($"'{path}' has {length:N0} bytes, more than the {maxBytes:N0} this file may hold.");

    private static string KindOf(uint mode) => (mode & FileTypeMask) switch
    {
        0x1000 => "FIFO (named pipe)",
        0x2000 => "character device",
        0x4000 => "directory",
        0x6000 => "block device",
        0xC000 => "socket",
        _ => $"special file (mode 0x{mode:X})",
    };

    /// <summary>The <c>st_mode</c> of <paramref name="path"/> (symlinks followed), or null where it cannot be read here.</summary>
    private static uint? ModeOf(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        int offset = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 24,   // st_dev, st_ino, st_nlink (8 bytes each), then st_mode
            Architecture.Arm64 => 16, // st_dev, st_ino (8 bytes each), then st_mode
            _ => -1,
        };
        if (offset < 0) return null;
        var buffer = new byte[256]; // struct stat is 144 (x64) or 128 (arm64) bytes
        try
        {
            if (Stat(path, buffer) != 0) return null; // existence was checked; a race leaves the open to report it
        }
        catch (EntryPointNotFoundException)
        {
            return null; // glibc before 2.33 exports stat only as __xstat
        }
        return BitConverter.ToUInt32(buffer, offset);
    }

    [DllImport("libc", EntryPoint = "stat", SetLastError = true)]
    private static extern int Stat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] buffer);
}
