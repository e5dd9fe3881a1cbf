using System.Security.Cryptography;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>Copies a stream of untrusted length: never more than a cap, so an entry that claims little but holds much is refused while it streams.</summary>
internal static class CappedStream
{
    /// <summary>Reads all of <paramref name="source"/>, refusing more than <paramref name="maxBytes"/>.</summary>
    /// <exception cref="InvalidDataException">More than <paramref name="maxBytes"/>; the message names <paramref name="name"/>.</exception>
    public static byte[] ReadAll(Stream source, int maxBytes, string name)
    {
        using var buffer = new MemoryStream();
        Copy(source, buffer, maxBytes, name, out _);
        return buffer.ToArray();
    }

    /// <summary>Copies <paramref name="source"/> to <paramref name="destination"/>, hashing it with SHA-256.</summary>
    /// <returns>The number of bytes copied.</returns>
    /// <exception cref="InvalidDataException">More than <paramref name="maxBytes"/>; the message names <paramref name="name"/>.</exception>
    public static long Copy(Stream source, Stream destination, long maxBytes, string name, out string sha256)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var chunk = new byte[1 << 20];
        long total = 0;
        int read;
        while ((read = source.Read(chunk, 0, chunk.Length)) > 0)
        {
            total += read;
            if (total > maxBytes) throw new InvalidDataException($"'{name}' holds more than the {maxBytes:N0} bytes expected of it; refused before " +
                $"extracting the rest.");
            hash.AppendData(chunk, 0, read);
            destination.Write(chunk, 0, read);
        }
        sha256 = Convert.ToHexStringLower(hash.GetHashAndReset());
        return total;
    }
}
