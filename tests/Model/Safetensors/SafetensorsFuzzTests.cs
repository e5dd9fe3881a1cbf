using System.Buffers.Binary;
using System.Text;
using Microsoft.ML.Qwen3Moe.Safetensors;
using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>
/// Mutation fuzzing of valid files (deterministic seed): every mutated file either loads, with every tensor equal to
/// the bytes its header points at (and to the original where neither its entry nor its bytes changed), or is refused
/// with <see cref="InvalidDataException"/> / <see cref="FormatException"/>. Anything else (another exception type, a
/// native crash, a huge allocation) fails the test.
/// </summary>
public class SafetensorsFuzzTests
{
    private const int Cases = 12_000;
    private const int Seed = 20250701;

    private enum Mutation { ByteFlips, HeaderByteFlips, DataByteFlips, Truncate, HeaderLength, HeaderJsonEdit, AppendBytes }

    private static readonly string[] NumberReplacements =
        ["-1", "0", "1", "2", "3", "8", "-0", "1.5", "1e3", "4294967296", "9223372036854775807", "9223372036854775808",
         "18446744073709551615", "99999999999999999999999", "null", "\"2\"", "[]", "{}", "true"];

    private static readonly string[] DtypeReplacements =
        ["F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F64", "U16", "F8_E4M3", "f32", "", "F32 ", "\\u0046\\u0033\\u0032"];

    private static readonly string[] Insertions =
        ["{", "}", "[", "]", ",", ":", "\"", "0", "-", ".", "e", " ", "\"x\":1,", "\"dtype\":\"F32\",", "\\", "\u00ff", "\"__metadata__\":{},"];

    [Test]
    public void MutatedFilesLoadCorrectlyOrFailCleanly()
    {
        using var files = new CheckpointTestFiles();
        var (original, originalEntries) = BuildOriginal(files);
        var originalHeaderLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(original);
        var originalHeader = Encoding.UTF8.GetString(original, 8, originalHeaderLength);
        var random = new Random(Seed);
        var path = files.PathOf("mutant.safetensors");
        int loaded = 0, rejected = 0;

        // One file rewritten in place: truncating to zero or creating a file per case costs ~1 ms each on ext4.
        using var mutantFile = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);

        for (var i = 0; i < Cases; i++)
        {
            var kind = (Mutation)(i % 7);
            var mutant = Mutate(kind, original, originalHeader, originalHeaderLength, random, out var changedData);
            mutantFile.Position = 0;
            mutantFile.Write(mutant);
            mutantFile.SetLength(mutant.Length);
            try
            {
                CheckLoads(path, mutant, originalEntries, original, originalHeaderLength, changedData, $"case {i} ({kind})");
                loaded++;
            }
            catch (Exception e) when (e is InvalidDataException or FormatException)
            {
                Check(e.Message.Contains(path, StringComparison.Ordinal), $"case {i} ({kind})", "", $"message does not name the file: {e.Message}");
                rejected++;
            }
            catch (Exception e) when (e is not AssertionException)
            {
                Assert.Fail($"case {i} ({kind}) threw {e.GetType().Name}, not a clean format error: {e}");
            }
        }

        TestContext.Out.WriteLine($"{Cases} mutants: {loaded} loaded, {rejected} rejected");
        Assert.That(loaded, Is.GreaterThan(Cases / 20), "enough mutants stay valid for the equality checks to matter");
        Assert.That(rejected, Is.GreaterThan(Cases / 4), "enough mutants are invalid for the rejection paths to matter");
    }

    private static (byte[] Bytes, IReadOnlyDictionary<string, SafetensorsEntry> Entries) BuildOriginal(CheckpointTestFiles files)
    {
        using var scope = torch.NewDisposeScope();
        var random = new Random(Seed);
        var path = files.PathOf("original.safetensors");
        SafetensorsWriter.Write(path,
        [
            new("model.embed.weight", CheckpointTestFiles.RandomTensor(torch.ScalarType.Float32, [2, 3], random)),
            new("ids", CheckpointTestFiles.RandomTensor(torch.ScalarType.Int64, [4], random)),
            new("bf", CheckpointTestFiles.RandomTensor(torch.ScalarType.BFloat16, [3], random)),
            new("mask", CheckpointTestFiles.RandomTensor(torch.ScalarType.Bool, [5], random)),
            new("empty", torch.empty([0, 2], torch.uint8)),
            new("half", CheckpointTestFiles.RandomTensor(torch.ScalarType.Float16, [], random)),
        ]);
        using var file = SafetensorsFile.Open(path);
        return (File.ReadAllBytes(path), file.Entries);
    }

    /// <summary>
    /// Returns the mutant; <paramref name="changedData"/> lists data-section offsets changed while the header stayed
    /// byte-identical, or is null when the header changed.
    /// </summary>
    private static byte[] Mutate(Mutation kind, byte[] original, string header, int headerLength, Random random, out List<long>? changedData)
    {
        var bytes = (byte[])original.Clone();
        changedData = null;
        switch (kind)
        {
            case Mutation.ByteFlips:
                Flip(bytes, 0, bytes.Length, random.Next(1, 5), random);
                break;
            case Mutation.HeaderByteFlips:
                Flip(bytes, 8, 8 + headerLength, random.Next(1, 3), random);
                break;
            case Mutation.DataByteFlips:
                changedData = Flip(bytes, 8 + headerLength, bytes.Length, random.Next(1, 4), random)
                    .Select(p => (long)(p - 8 - headerLength)).ToList();
                break;
            case Mutation.Truncate:
                bytes = bytes[..random.Next(0, bytes.Length)];
                break;
            case Mutation.HeaderLength:
                var length = random.Next(6) switch
                {
                    0 => (ulong)(headerLength + random.Next(-16, 17)),
                    1 => (ulong)random.Next(0, bytes.Length),
                    2 => (ulong)random.NextInt64(),
                    3 => ulong.MaxValue - (ulong)random.Next(0, 16),
                    4 => (ulong)random.Next(0, 8),
                    _ => (ulong)headerLength ^ (1UL << random.Next(64)),
                };
                BinaryPrimitives.WriteUInt64LittleEndian(bytes, length);
                break;
            case Mutation.HeaderJsonEdit:
                var edited = EditJson(header, random);
                bytes = CheckpointTestFiles.Build(Encoding.UTF8.GetBytes(edited), original[(8 + headerLength)..]);
                break;
            case Mutation.AppendBytes:
                var extra = new byte[random.Next(1, 16)];
                random.NextBytes(extra);
                bytes = [.. bytes, .. extra];
                break;
        }
        return bytes;
    }

    private static List<int> Flip(byte[] bytes, int from, int to, int count, Random random)
    {
        var positions = new List<int>();
        for (var k = 0; k < count && to > from; k++)
        {
            var position = random.Next(from, to);
            bytes[position] ^= (byte)random.Next(1, 256);
            positions.Add(position);
        }
        return positions;
    }

    private static string EditJson(string header, Random random)
    {
        switch (random.Next(6))
        {
            case 0:
            {
                // Replace one number (or the first digit run after a random point) with another JSON value.
                var start = FindDigit(header, random.Next(header.Length));
                if (start < 0)
                {
                    return header;
                }
                var end = start;
                while (end < header.Length && char.IsAsciiDigit(header[end]))
                {
                    end++;
                }
                return header[..start] + NumberReplacements[random.Next(NumberReplacements.Length)] + header[end..];
            }
            case 1:
            {
                var dtype = DtypeReplacements[random.Next(DtypeReplacements.Length)];
                var at = header.IndexOf("\"dtype\":\"", random.Next(header.Length), StringComparison.Ordinal);
                if (at < 0)
                {
                    at = header.IndexOf("\"dtype\":\"", StringComparison.Ordinal);
                }
                var valueStart = at + "\"dtype\":\"".Length;
                var valueEnd = header.IndexOf('"', valueStart);
                return header[..valueStart] + dtype + header[valueEnd..];
            }
            case 2:
            {
                var start = random.Next(header.Length);
                return header.Remove(start, Math.Min(random.Next(1, 6), header.Length - start));
            }
            case 3:
            {
                return header.Insert(random.Next(header.Length + 1), Insertions[random.Next(Insertions.Length)]);
            }
            case 4:
            {
                // Repeat one entry under its own name (duplicate key) or under a new name (overlapping range).
                var at = header.IndexOf(",\"", random.Next(header.Length), StringComparison.Ordinal);
                if (at < 0)
                {
                    return header;
                }
                var close = header.IndexOf('}', at);
                var entry = header[(at + 1)..(close + 1)];
                var renamed = random.Next(2) == 0 ? entry : "\"copy" + entry[1..];
                return header[..(close + 1)] + "," + renamed + header[(close + 1)..];
            }
            default:
            {
                // Swap two numbers.
                var a = FindDigit(header, random.Next(header.Length));
                var b = FindDigit(header, random.Next(header.Length));
                if (a < 0 || b < 0 || a == b)
                {
                    return header;
                }
                var chars = header.ToCharArray();
                (chars[a], chars[b]) = (chars[b], chars[a]);
                return new string(chars);
            }
        }
    }

    private static int FindDigit(string text, int from)
    {
        for (var i = from; i < text.Length; i++)
        {
            if (char.IsAsciiDigit(text[i]))
            {
                return i;
            }
        }
        return -1;
    }

    private static void CheckLoads(string path, byte[] mutant, IReadOnlyDictionary<string, SafetensorsEntry> originalEntries,
        byte[] original, int originalHeaderLength, List<long>? changedData, string what)
    {
        // Plain comparisons with Assert.Fail on mismatch: NUnit constraints per tensor would dominate the run time.
        using var file = SafetensorsFile.Open(path);
        var dataStart = 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(mutant);
        foreach (var (name, entry) in file.Entries)
        {
            using var scope = torch.NewDisposeScope();
            var tensor = file.ReadTensor(name);
            var bytes = tensor.bytes;
            Check(SafetensorsDType.FromScalarType(tensor.dtype, name) == entry.DType, what, name, "dtype differs from the entry");
            Check(tensor.shape.AsSpan().SequenceEqual(entry.Shape), what, name, "shape differs from the entry");
            Check(bytes.SequenceEqual(mutant.AsSpan((int)(dataStart + entry.Begin), (int)entry.ByteLength)), what, name, "bytes differ from the file's");

            if (changedData is not null)
            {
                // Header untouched: the entry is the original one, and untouched tensors read back as the original bytes.
                var before = originalEntries[name];
                Check(entry.Shape.SequenceEqual(before.Shape) && (entry.DType, entry.Begin, entry.End) == (before.DType, before.Begin, before.End),
                    what, name, "entry differs from the original");
                if (!changedData.Any(p => p >= entry.Begin && p < entry.End))
                {
                    Check(bytes.SequenceEqual(original.AsSpan(8 + originalHeaderLength + (int)before.Begin, (int)before.ByteLength)),
                        what, name, "bytes differ from the original");
                }
            }
        }
        if (changedData is not null)
        {
            Check(file.Entries.Keys.SequenceEqual(originalEntries.Keys), what, "", "names differ from the original");
        }
    }

    private static void Check(bool condition, string what, string name, string problem)
    {
        if (!condition)
        {
            Assert.Fail($"{what}: tensor '{name}': {problem}");
        }
    }
}
