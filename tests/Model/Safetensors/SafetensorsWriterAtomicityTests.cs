using Microsoft.ML.Qwen3Moe.Safetensors;
using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>A failed <see cref="SafetensorsWriter.Write"/> leaves the previous file intact and no temp file behind.</summary>
public class SafetensorsWriterAtomicityTests : CheckpointTestBase
{
    private static IEnumerable<KeyValuePair<string, torch.Tensor>> ThrowingAfterOne(torch.Tensor tensor)
    {
        yield return new("first", tensor);
        throw new InvalidOperationException("enumeration failed");
    }

    [Test]
    public void EnumeratorThrowingMidWayLeavesExistingFileIntactAndNoTempFile()
    {
        using var scope = torch.NewDisposeScope();
        var error = AssertFailedWriteKeepsExistingFile<InvalidOperationException>(ThrowingAfterOne(torch.ones(1000)));
        Assert.That(error.Message, Is.EqualTo("enumeration failed"));
    }

    [Test]
    public void UnsupportedDtypeAfterValidTensorsLeavesExistingFileIntactAndNoTempFile()
    {
        using var scope = torch.NewDisposeScope();
        var error = AssertFailedWriteKeepsExistingFile<ArgumentException>([new("ok", torch.ones(4)), new("complex", torch.zeros(2, dtype: torch.complex64))]);
        Assert.That(error.Message, Does.Contain("'complex'").And.Contain("ComplexFloat32"));
    }

    private TException AssertFailedWriteKeepsExistingFile<TException>(IEnumerable<KeyValuePair<string, torch.Tensor>> tensors)
        where TException : Exception
    {
        var path = Files.PathOf("model.safetensors");
        using (var old = torch.arange(10, dtype: torch.int64))
        {
            SafetensorsWriter.Write(path, [new("old", old)]);
        }
        var before = File.ReadAllBytes(path);

        var error = Assert.Throws<TException>(() => SafetensorsWriter.Write(path, tensors));

        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before), "the existing file is untouched");
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.EqualTo(new[] { path }), "no temp file is left");
        return error!;
    }

    [TestCase("__metadata__")]
    [TestCase("")]
    public void ReservedOrEmptyNameIsRejectedAndNothingIsCreated(string name)
    {
        using var scope = torch.NewDisposeScope();
        var path = Files.PathOf("model.safetensors");
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new(name, torch.ones(1))]));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.Empty);
    }

    [Test]
    public void DuplicateNameIsRejectedAndNothingIsCreated()
    {
        using var scope = torch.NewDisposeScope();
        var path = Files.PathOf("model.safetensors");
        var error = Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("w", torch.ones(1)), new("w", torch.zeros(1))]));
        Assert.That(error!.Message, Does.Contain("'w'"));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.Empty);
    }

    [Test]
    public void SuccessfulWriteReplacesTheFileAndLeavesNoTempFile()
    {
        using var scope = torch.NewDisposeScope();
        var path = Files.PathOf("model.safetensors");
        SafetensorsWriter.Write(path, [new("old", torch.ones(3))]);
        SafetensorsWriter.Write(path, [new("new", torch.zeros(5))]);

        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Entries.Keys, Is.EqualTo(new[] { "new" }));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.EqualTo(new[] { path }));
    }
}
