using System.Buffers.Binary;
using Microsoft.ML.Qwen3Moe.Safetensors;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>
/// Files from outside (issue 7): every malformed safetensors file is refused with an <see cref="InvalidDataException"/>
/// naming the file and the specific problem. Each case asserts the message of its own rule, so removing that rule
/// makes the case fail.
/// </summary>
public class SafetensorsStrictnessTests : CheckpointTestBase
{
    private const string F32Entry = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    private static IEnumerable<TestCaseData> MalformedHeaders()
    {
        TestCaseData Case(string name, string header, int dataLength, string problem) =>
            new TestCaseData(header, dataLength, problem).SetName($"Rejects_{name}");

        yield return Case("NotJson", "{\"a\":", 8, "not valid JSON");
        yield return Case("TrailingComma", "{\"a\":" + F32Entry + ",}", 8, "not valid JSON");
        yield return Case("TooDeep", "{\"a\":{\"dtype\":\"F32\",\"shape\":[[[[[[[[[[[[2]]]]]]]]]]]],\"data_offsets\":[0,8]}}", 8, "not valid JSON");
        yield return Case("HeaderArray", "[1,2]", 8, "is a JSON Array, not an object");
        yield return Case("HeaderString", "\"x\"", 8, "is a JSON String, not an object");
        yield return Case("EntryNotObject", "{\"a\":5}", 8, "tensor 'a' is a JSON Number, not an object");
        yield return Case("MissingDtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "has no 'dtype'");
        yield return Case("MissingShape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "has no 'shape'");
        yield return Case("MissingOffsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "has no 'data_offsets'");
        yield return Case("DtypeNumber", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'dtype' that is a JSON Number");
        yield return Case("ShapeString", "{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8, "'shape' that is a JSON String");
        yield return Case("ShapeItemFloat", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
            "'shape' item that is not a 64-bit integer");
        yield return Case("ShapeItemString", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
            "'shape' item that is not a 64-bit integer");
        yield return Case("ShapeItemHuge", "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", 8,
            "'shape' item that is not a 64-bit integer");
        yield return Case("OffsetsObject", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}}}", 8, "'data_offsets' that is a JSON Object");
        yield return Case("OffsetsThree", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "expected [begin, end]");
        yield return Case("OffsetsFloat", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8e0]}}", 8,
            "'data_offsets' item that is not a 64-bit integer");
        yield return Case("UnknownField", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unknown field 'x'");
        yield return Case("UnknownDtype", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown or unsupported dtype 'Q4'");
        yield return Case("UnsupportedDtype", "{\"a\":{\"dtype\":\"U32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown or unsupported dtype 'U32'");
        yield return Case("LowercaseDtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown or unsupported dtype 'f32'");
        yield return Case("NegativeDim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,-1],\"data_offsets\":[0,8]}}", 8, "negative dimension -2");
        yield return Case("ElementCountOverflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}", 8,
            "element count overflows");
        yield return Case("ByteSizeOverflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8, "byte size overflows");
        yield return Case("TooManyDims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[" + string.Join(",", Enumerable.Repeat(1, 65)) + "],\"data_offsets\":[0,4]}}",
            4, "65 dimensions");
        yield return Case("SizeMismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12 bytes");
        yield return Case("EndBeforeBegin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before begin or negative");
        yield return Case("NegativeBegin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "end before begin or negative");
        yield return Case("OffsetsBeyondData", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "the data section has only 8 bytes");
        yield return Case("Overlap", "{\"a\":" + F32Entry + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
        yield return Case("SameRangeTwice", "{\"a\":" + F32Entry + ",\"b\":" + F32Entry + "}", 8, "overlap");
        yield return Case("Hole", "{\"a\":" + F32Entry + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "belong to no tensor");
        yield return Case("TrailingBytes", "{\"a\":" + F32Entry + "}", 12, "trailing bytes");
        yield return Case("DuplicateName", "{\"a\":" + F32Entry + ",\"a\":" + F32Entry + "}", 8, "names 'a' more than once");
        yield return Case("DuplicateField", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
            "names 'dtype' more than once");
        yield return Case("DuplicateMetadata", "{\"__metadata__\":{\"format\":\"pt\",\"format\":\"np\"},\"a\":" + F32Entry + "}", 8,
            "'__metadata__' names 'format' more than once");
        yield return Case("DuplicateMetadataObject", "{\"__metadata__\":{},\"__metadata__\":{},\"a\":" + F32Entry + "}", 8,
            "names '__metadata__' more than once");
        yield return Case("MetadataNotObject", "{\"__metadata__\":[],\"a\":" + F32Entry + "}", 8, "'__metadata__' is a JSON Array");
        yield return Case("MetadataValueNumber", "{\"__metadata__\":{\"format\":1},\"a\":" + F32Entry + "}", 8, "value 'format' is a JSON Number");
    }

    [TestCaseSource(nameof(MalformedHeaders))]
    public void MalformedHeaderIsRejected(string header, int dataLength, string problem)
    {
        var path = Files.WriteBytes("bad.safetensors", CheckpointTestFiles.Build(header, dataLength));
        AssertRejected(path, problem);
    }

    [Test]
    public void ValidBaseCaseLoads()
    {
        // The malformed cases above are edits of this file; it must load, so each rejection is due to its edit.
        var path = Files.WriteBytes("ok.safetensors",
            CheckpointTestFiles.Build("{\"__metadata__\":{\"format\":\"pt\"},\"a\":" + F32Entry +
            ",\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 8));
        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Entries.Keys, Is.EqualTo(new[] { "a", "b" }));
        Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
        using var a = file.ReadTensor("a");
        Assert.That(CheckpointTestFiles.BytesOf(a), Is.EqualTo(new byte[] { 0, 1, 2, 3, 4, 5, 6, 7 }));
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(7)]
    public void FileShorterThanLengthPrefixIsRejected(int length)
    {
        var path = Files.WriteBytes("short.safetensors", new byte[length]);
        AssertRejected(path, "fewer than the 8-byte header length prefix");
    }

    [TestCase(1L)]
    [TestCase(1L << 20)]
    public void HeaderLengthBeyondFileIsRejected(long excess)
    {
        var bytes = CheckpointTestFiles.Build("{\"a\":" + F32Entry + "}", 8);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)(bytes.Length - 8 + excess));
        var path = Files.WriteBytes("long.safetensors", bytes);
        AssertRejected(path, "goes beyond the end of the");
    }

    [Test]
    public void HeaderLengthAboveCapIsRejectedWithoutReadingIt()
    {
        // A sparse file longer than the cap, so only the cap (not the file length) can reject it.
        var path = Files.PathOf("huge-header.safetensors");
        using (var stream = File.Create(path))
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, SafetensorsHeader.MaxHeaderBytes + 1);
            stream.Write(prefix);
            stream.SetLength(SafetensorsHeader.MaxHeaderBytes + 100);
        }
        AssertRejected(path, $"exceeds the limit of {SafetensorsHeader.MaxHeaderBytes} bytes");

        var maxPath = Files.WriteBytes("max-header.safetensors", [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, (byte)'{', (byte)'}']);
        AssertRejected(maxPath, "exceeds the limit");
    }

    [Test]
    public void HeaderNotUtf8IsRejected()
    {
        var header = "{\"a\":"u8.ToArray().Concat(new byte[] { 0xC3, 0x28 }).ToArray();
        var path = Files.WriteBytes("latin.safetensors", CheckpointTestFiles.Build(header, []));
        AssertRejected(path, "not valid UTF-8");
    }

    [Test]
    public void TruncatedFileIsRejected()
    {
        var bytes = CheckpointTestFiles.Build("{\"a\":" + F32Entry + "}", 8);
        var path = Files.WriteBytes("truncated.safetensors", bytes[..^3]);
        AssertRejected(path, "the data section has only 5 bytes");
    }

    [Test]
    public void FileTruncatedAfterOpenFailsCleanlyOnRead()
    {
        var path = Files.WriteBytes("shrinking.safetensors", CheckpointTestFiles.Build("{\"a\":" + F32Entry + "}", 8));
        using var file = SafetensorsFile.Open(path);
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
        {
            stream.SetLength(stream.Length - 4);
        }
        var error = Assert.Throws<InvalidDataException>(() => file.ReadTensor("a").Dispose());
        Assert.That(error!.Message, Does.Contain(path).And.Contain("inside tensor data"));
    }

    [Test]
    public void BoolTensorWithBytesOtherThanZeroOrOneIsRejectedOnRead()
    {
        var path = Files.WriteBytes("bool.safetensors",
            CheckpointTestFiles.Build("{\"ok\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}," +
                "\"bad\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4));
        using var file = SafetensorsFile.Open(path);
        using var ok = file.ReadTensor("ok");
        Assert.That(ok.data<bool>().ToArray(), Is.EqualTo(new[] { false, true }));
        var error = Assert.Throws<InvalidDataException>(() => file.ReadTensor("bad").Dispose());
        Assert.That(error!.Message, Does.Contain(path).And.Contain("'bad' holds bytes other than 0 and 1"));
    }

    [Test]
    public void UnknownTensorNameThrowsKeyNotFoundNamingFileAndKey()
    {
        var path = Files.WriteBytes("one.safetensors", CheckpointTestFiles.Build("{\"a\":" + F32Entry + "}", 8));
        using var file = SafetensorsFile.Open(path);
        var error = Assert.Throws<KeyNotFoundException>(() => file.ReadTensor("nope").Dispose());
        Assert.That(error!.Message, Does.Contain(path).And.Contain("'nope'"));
    }

    [Test]
    public void ReadAfterDisposeThrowsObjectDisposed()
    {
        var path = Files.WriteBytes("one.safetensors", CheckpointTestFiles.Build("{\"a\":" + F32Entry + "}", 8));
        var file = SafetensorsFile.Open(path);
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReadTensor("a").Dispose());
    }

    private static void AssertRejected(string path, string problem)
    {
        var error = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.That(error!.Message, Does.Contain(path), "the message names the file");
        Assert.That(error.Message, Does.Contain(problem), "the message names the problem");
    }
}
