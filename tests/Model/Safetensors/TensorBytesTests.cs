using Microsoft.ML.Qwen3Moe.Safetensors;
using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>
/// The chunked path of <see cref="TensorBytes"/> (used for tensors over 1 GiB) gives the same bytes as one span,
/// exercised here with small chunk sizes so it runs on small tensors.
/// </summary>
public class TensorBytesTests
{
    [TestCase(4)]
    [TestCase(10)]
    [TestCase(64)]
    [TestCase(1)]
    public void ChunkedWriteAndReadMatchTheWholeTensor(int chunkBytes)
    {
        using var scope = torch.NewDisposeScope();
        using var files = new CheckpointTestFiles();
        var tensor = CheckpointTestFiles.RandomTensor(torch.ScalarType.Float32, [7, 9], new Random(3));
        var expected = CheckpointTestFiles.BytesOf(tensor);

        using var stream = new MemoryStream();
        stream.Write([1, 2, 3]);
        TensorBytes.WriteTo(stream, tensor, chunkBytes);
        Assert.That(stream.ToArray()[3..], Is.EqualTo(expected));

        var path = files.WriteBytes("raw.bin", stream.ToArray());
        using var handle = File.OpenHandle(path);
        var read = torch.empty([7, 9], torch.float32);
        TensorBytes.ReadInto(handle, 3, read, path, chunkBytes);
        CheckpointTestFiles.AssertBitEqual(tensor, read, "chunked read");
    }

    [Test]
    public void ReadPastEndOfFileIsInvalidData()
    {
        using var scope = torch.NewDisposeScope();
        using var files = new CheckpointTestFiles();
        var path = files.WriteBytes("raw.bin", new byte[10]);
        using var handle = File.OpenHandle(path);
        var error = Assert.Throws<InvalidDataException>(() => TensorBytes.ReadInto(handle, 0, torch.empty(3, torch.float32), path, 4));
        Assert.That(error!.Message, Does.Contain(path).And.Contain("ends at byte 10"));
    }

    [Test]
    public void NonContiguousTensorIsRefused()
    {
        using var scope = torch.NewDisposeScope();
        var view = torch.zeros(3, 4).t();
        Assert.Throws<ArgumentException>(() => TensorBytes.WriteTo(Stream.Null, view));
    }
}
