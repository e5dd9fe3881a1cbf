using System.Buffers.Binary;
using System.Text;
using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>Temp folders, hand-built safetensors bytes, fixture paths and tensor comparisons for the checkpoint tests.</summary>
internal sealed class CheckpointTestFiles : IDisposable
{
    public CheckpointTestFiles()
    {
        Root = Path.Combine(Path.GetTempPath(), "qwen3moe-checkpoint-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);
    }

    /// <summary>A fresh folder, deleted by <see cref="Dispose"/>.</summary>
    public string Root { get; }

    public string PathOf(string name) => Path.Combine(Root, name);

    /// <summary>Writes <paramref name="bytes"/> to a file under <see cref="Root"/> and returns its path.</summary>
    public string WriteBytes(string name, byte[] bytes)
    {
        var path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    public void Dispose()
    {
        if (Directory.Exists(Root))
        {
            Directory.Delete(Root, recursive: true);
        }
    }

    /// <summary>A safetensors file image: little-endian header length, the header, the data.</summary>
    public static byte[] Build(byte[] header, byte[] data)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    /// <summary>A safetensors file image with a JSON header and <paramref name="dataLength"/> data bytes (0, 1, 2, ...).</summary>
    public static byte[] Build(string header, int dataLength) =>
        Build(Encoding.UTF8.GetBytes(header), Enumerable.Range(0, dataLength).Select(i => (byte)i).ToArray());

    public static string FixtureModel(string name) =>
        Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "golden", name, "model");

    public static string FixtureExpected(string name) =>
        Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "golden", name, "expected.safetensors");

    /// <summary>A contiguous CPU copy's raw bytes.</summary>
    public static byte[] BytesOf(torch.Tensor tensor)
    {
        using var cpu = tensor.detach().cpu().contiguous();
        return cpu.bytes.ToArray();
    }

    /// <summary>Asserts same dtype, same shape and the same bytes (so NaN payloads and -0 count).</summary>
    public static void AssertBitEqual(torch.Tensor expected, torch.Tensor actual, string what)
    {
        Assert.That(actual.dtype, Is.EqualTo(expected.dtype), $"{what}: dtype");
        Assert.That(actual.shape, Is.EqualTo(expected.shape), $"{what}: shape");
        Assert.That(BytesOf(actual), Is.EqualTo(BytesOf(expected)), $"{what}: bytes");
    }

    /// <summary>A tensor of <paramref name="type"/> whose storage is random bits (0/1 for bool).</summary>
    public static torch.Tensor RandomTensor(torch.ScalarType type, long[] shape, Random random)
    {
        var tensor = torch.empty(shape, type);
        var span = tensor.bytes;
        random.NextBytes(span);
        if (type == torch.ScalarType.Bool)
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] &= 1;
            }
        }
        return tensor;
    }
}
