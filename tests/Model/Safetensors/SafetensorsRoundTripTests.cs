using System.Buffers.Binary;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Safetensors;
using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>What <see cref="SafetensorsWriter"/> writes, <see cref="SafetensorsFile"/> reads back bit for bit.</summary>
public class SafetensorsRoundTripTests : CheckpointTestBase
{
    [TestCase(torch.ScalarType.Bool, "BOOL")]
    [TestCase(torch.ScalarType.Byte, "U8")]
    [TestCase(torch.ScalarType.Int8, "I8")]
    [TestCase(torch.ScalarType.Int16, "I16")]
    [TestCase(torch.ScalarType.Int32, "I32")]
    [TestCase(torch.ScalarType.Int64, "I64")]
    [TestCase(torch.ScalarType.Float16, "F16")]
    [TestCase(torch.ScalarType.BFloat16, "BF16")]
    [TestCase(torch.ScalarType.Float32, "F32")]
    [TestCase(torch.ScalarType.Float64, "F64")]
    public void EveryDtypeRoundTripsBitExact(torch.ScalarType type, string dtype)
    {
        using var scope = torch.NewDisposeScope();
        var random = new Random(17);
        var matrix = CheckpointTestFiles.RandomTensor(type, [3, 5], random);
        var scalar = CheckpointTestFiles.RandomTensor(type, [], random);
        var empty = torch.empty([0, 4], type);
        var path = Files.PathOf("dtype.safetensors");

        SafetensorsWriter.Write(path, [new("m", matrix), new("s", scalar), new("e", empty)]);

        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Entries.Values.Select(e => e.DType), Is.All.EqualTo(dtype));
        Assert.That(file.Entries["m"].Shape, Is.EqualTo(new long[] { 3, 5 }));
        Assert.That(file.Entries["s"].Shape, Is.Empty);
        CheckpointTestFiles.AssertBitEqual(matrix, file.ReadTensor("m"), "matrix");
        CheckpointTestFiles.AssertBitEqual(scalar, file.ReadTensor("s"), "scalar");
        CheckpointTestFiles.AssertBitEqual(empty, file.ReadTensor("e"), "empty");
    }

    [Test]
    public void ViewsAndGradTensorsAreWrittenContiguousWithoutChangingThem()
    {
        using var scope = torch.NewDisposeScope();
        var baseTensor = torch.arange(24, dtype: torch.float32).reshape(4, 6);
        var transposed = baseTensor.t();
        var narrowed = baseTensor.narrow(1, 2, 3);
        var grad = torch.ones([2, 2], requires_grad: true);
        var path = Files.PathOf("views.safetensors");

        SafetensorsWriter.Write(path, [new("t", transposed), new("n", narrowed), new("g", grad)]);

        using var file = SafetensorsFile.Open(path);
        CheckpointTestFiles.AssertBitEqual(transposed, file.ReadTensor("t"), "transposed");
        CheckpointTestFiles.AssertBitEqual(narrowed, file.ReadTensor("n"), "narrowed");
        CheckpointTestFiles.AssertBitEqual(grad, file.ReadTensor("g"), "requires_grad");
        Assert.That(file.ReadTensor("t").data<float>().ToArray()[..4], Is.EqualTo(new float[] { 0, 6, 12, 18 }));
        Assert.That(transposed.is_contiguous(), Is.False, "the caller's view is left as it was");
    }

    [Test]
    public void EntriesKeepTheGivenOrderAndNamesNeedingEscapesSurvive()
    {
        using var scope = torch.NewDisposeScope();
        string[] names = ["z.last\"quoted\"", "a/back\\slash", "μ-unicode ✓", "model.layers.0.mlp.gate.weight"];
        var tensors = names.Select((n, i) => KeyValuePair.Create(n, torch.full([2], i, torch.float32))).ToList();
        var path = Files.PathOf("names.safetensors");

        SafetensorsWriter.Write(path, tensors);

        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Entries.Keys, Is.EqualTo(names));
        for (var i = 0; i < names.Length; i++)
        {
            CheckpointTestFiles.AssertBitEqual(tensors[i].Value, file.ReadTensor(names[i]), names[i]);
        }
    }

    [Test]
    public void MetadataDefaultsToFormatPtAndCustomMetadataIsKept()
    {
        using var scope = torch.NewDisposeScope();
        var tensor = torch.zeros(3);
        var plain = Files.PathOf("plain.safetensors");
        var custom = Files.PathOf("custom.safetensors");

        SafetensorsWriter.Write(plain, [new("x", tensor)]);
        SafetensorsWriter.Write(custom, [new("x", tensor)], new Dictionary<string, string> { ["origin"] = "test", ["format"] = "pt" });
        var withoutFormat = Files.PathOf("noformat.safetensors");
        SafetensorsWriter.Write(withoutFormat, [new("x", tensor)], new Dictionary<string, string> { ["origin"] = "test" });

        using var a = SafetensorsFile.Open(plain);
        using var b = SafetensorsFile.Open(custom);
        using var c = SafetensorsFile.Open(withoutFormat);
        Assert.That(a.Metadata, Is.EquivalentTo(new Dictionary<string, string> { ["format"] = "pt" }));
        Assert.That(b.Metadata, Is.EquivalentTo(new Dictionary<string, string> { ["format"] = "pt", ["origin"] = "test" }));
        Assert.That(c.Metadata, Is.EquivalentTo(new Dictionary<string, string> { ["format"] = "pt", ["origin"] = "test" }));
    }

    [Test]
    public void DataSectionStartsEightByteAligned()
    {
        using var scope = torch.NewDisposeScope();
        var path = Files.PathOf("aligned.safetensors");
        SafetensorsWriter.Write(path, [new("odd-name-x", torch.zeros(1, dtype: torch.float64))]);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(path));
        Assert.That(headerLength % 8, Is.EqualTo(0UL));
    }

    [TestCase("tiny")]
    [TestCase("mixed")]
    public void ExpectedFixtureRoundTripsTensorForTensor(string fixture)
    {
        RewriteAndCompare(CheckpointTestFiles.FixtureExpected(fixture), expectDtypes: ["F32", "I64"]);
    }

    [Test]
    public void TinyHuggingFaceCheckpointRoundTripsTensorForTensor()
    {
        var source = Path.Combine(CheckpointTestFiles.FixtureModel("tiny"), "model.safetensors");
        using (var original = SafetensorsFile.Open(source))
        {
            Assert.That(original.Metadata["format"], Is.EqualTo("pt"));
            Assert.That(original.Entries, Has.Count.GreaterThan(100));
        }
        RewriteAndCompare(source, expectDtypes: ["F32"]);
    }

    [Test]
    public void TinyFixtureValuesMatchAnIndependentDecoder()
    {
        // Decodes one tensor with plain BinaryPrimitives/JSON, independent of the reader under test.
        var path = Path.Combine(CheckpointTestFiles.FixtureModel("tiny"), "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, headerLength));
        var entry = header.RootElement.GetProperty("model.norm.weight");
        var begin = entry.GetProperty("data_offsets")[0].GetInt32();
        var count = entry.GetProperty("shape").EnumerateArray().Aggregate(1, (n, d) => n * d.GetInt32());
        var expected = Enumerable.Range(0, count)
            .Select(i => BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(8 + headerLength + begin + 4 * i)))
            .ToArray();

        using var file = SafetensorsFile.Open(path);
        using var tensor = file.ReadTensor("model.norm.weight");
        Assert.That(tensor.data<float>().ToArray(), Is.EqualTo(expected));
    }

    private void RewriteAndCompare(string source, string[] expectDtypes)
    {
        using var original = SafetensorsFile.Open(source);
        var copyPath = Files.PathOf("copy.safetensors");
        using (var scope = torch.NewDisposeScope())
        {
            SafetensorsWriter.Write(copyPath, original.Entries.Keys.Select(k => KeyValuePair.Create(k, original.ReadTensor(k))).ToList());
        }

        using var copy = SafetensorsFile.Open(copyPath);
        Assert.That(copy.Entries.Keys, Is.EqualTo(original.Entries.Keys));
        Assert.That(original.Entries.Values.Select(e => e.DType).Distinct(), Is.EquivalentTo(expectDtypes));
        foreach (var (name, entry) in original.Entries)
        {
            Assert.That(copy.Entries[name].DType, Is.EqualTo(entry.DType), name);
            Assert.That(copy.Entries[name].Shape, Is.EqualTo(entry.Shape), name);
            using var scope = torch.NewDisposeScope();
            CheckpointTestFiles.AssertBitEqual(original.ReadTensor(name), copy.ReadTensor(name), name);
        }
    }
}
