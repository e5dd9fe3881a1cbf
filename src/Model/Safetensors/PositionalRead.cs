using Microsoft.Win32.SafeHandles;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>Fills a buffer from a file position, treating an early end of file as invalid data.</summary>
internal static class PositionalRead
{
    /// <summary>
    /// Reads exactly <c>buffer.Length</c> bytes at <paramref name="offset"/> (positional, so safe from several threads).
    /// </summary>
    /// <param name="file">An open file.</param>
    /// <param name="buffer">Filled completely.</param>
    /// <param name="offset">File position of the first byte.</param>
    /// <param name="path">The file, for messages.</param>
    /// <param name="inside">What the bytes are, for the message ("the header", "tensor data").</param>
    /// <exception cref="InvalidDataException">The file ends first.</exception>
    public static void ReadExactly(SafeFileHandle file, Span<byte> buffer, long offset, string path, string inside)
    {
        while (!buffer.IsEmpty)
        {
            var read = RandomAccess.Read(file, buffer, offset);
            if (read <= 0)
            {
                throw SafetensorsHeader.Invalid(path, $"the file ends at byte {offset}, inside {inside}.");
            }
            buffer = buffer[read..];
            offset += read;
        }
    }
}
