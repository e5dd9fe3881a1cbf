using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Persistence;

/// <summary>
/// <c>mlContext.Qwen3Moe().SaveModel</c> replaces a model zip atomically; ML.NET's own <c>Model.Save(…, filePath)</c>
/// truncates the target before any model code runs (pinned here, since it is why SaveModel exists).
/// </summary>
public class ModelZipWriterTests : CheckpointTestBase
{
    internal const string Text = "The cat sat on the mat.";

    /// <summary>ML.NET 5.0.1 opens the target with File.Create: a model whose save fails has already lost the old file.</summary>
    [Test]
    public void MlNetsPathOverloadTruncatesTheOldFileBeforeTheModelSaves()
    {
        var ml = new MLContext(seed: 1);
        var path = Files.WriteBytes("model.zip", OldBytes);
        Assert.Catch(() => ml.Model.Save(new FailingTransformer(), null, path));
        Assert.That(File.ReadAllBytes(path), Is.Not.EqualTo(OldBytes), "if ML.NET stops truncating first, its path overload may have become safe: revisit " +
            "ModelZipWriter");
    }

    [Test]
    public void AFailingModelSaveLeavesTheOldFileAndNoTempFile()
    {
        var ml = new MLContext(seed: 1);
        var path = Files.WriteBytes("model.zip", OldBytes);
        var e = Assert.Catch(() => ml.Qwen3Moe().SaveModel(new FailingTransformer(), null, path))!;
        Assert.That(e.ToString(), Does.Contain(FailingTransformer.Message));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(OldBytes));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.EqualTo(new[] { path }));
    }

    /// <summary>A full disk in the middle of writing the weights: the old zip still loads and scores as before; nothing is left behind.</summary>
    [Test]
    public void AFullDiskMidSaveLeavesTheOldZipLoadableAndNoTempFile()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Text);
        var path = Files.PathOf("model.zip");
        using (var old = TestModels.RandomTextTransformer(ml, seed: 7)) ml.Qwen3Moe().SaveModel(old, data.Schema, path);
        var before = File.ReadAllBytes(path);
        var expected = Score(path);

        using var other = TestModels.RandomTextTransformer(ml, seed: 8);
        var e = Assert.Catch(() => ModelZipWriter.Save(ml, other, data.Schema, path, s => new FullDiskStream(s, failAfterBytes: before.Length / 2)))!;
        Assert.That(e.ToString(), Does.Contain("No space left on device"));

        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Score(path), Is.EqualTo(expected));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.EqualTo(new[] { path }));
        Assert.That(Directory.GetDirectories(Path.GetTempPath(), $"qwen3moe-save-{Environment.ProcessId}-*"), Is.Empty,
            "the scratch folder of the failed save is gone");
    }

    [Test]
    public void SaveModelWritesTheSameZipMlNetLoads()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, Text);
        var path = Files.PathOf("model.zip");
        using var scorer = TestModels.RandomTextTransformer(ml, seed: 7);
        var expected = TestModels.Floats(scorer.Transform(data), "MeanLogProbability");
        ml.Qwen3Moe().SaveModel(scorer, data.Schema, path);
        Assert.That(Score(path), Is.EqualTo(expected));
    }

    [Test]
    public void AFolderAsTheTargetIsRefused()
    {
        var ml = new MLContext(seed: 1);
        var folder = Directory.CreateDirectory(Files.PathOf("model.zip")).FullName;
        var e = Assert.Throws<IOException>(() => ml.Qwen3Moe().SaveModel(new FailingTransformer(), null, folder))!;
        Assert.That(e.Message, Does.Contain("is a folder"));
    }

    /// <summary>Loads a zip in a fresh context and scores <see cref="Text"/> (mean log-probability).</summary>
    internal static float[] Score(string path)
    {
        var fresh = new MLContext(seed: 2);
        fresh.ComponentCatalog.RegisterQwen3Moe();
        var loaded = fresh.Model.Load(path, out _);
        try
        {
            return TestModels.Floats(loaded.Transform(TestModels.Texts(fresh, Text)), "MeanLogProbability");
        }
        finally
        {
            (loaded as IDisposable)?.Dispose();
        }
    }

    private static byte[] OldBytes => "the previous model, complete"u8.ToArray();

    /// <summary>A transformer whose save fails (as a model's export would on a full disk).</summary>
    private sealed class FailingTransformer : ITransformer
    {
        public const string Message = "the model's save failed";

        public bool IsRowToRowMapper => true;

        public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => inputSchema;

        public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => throw new NotSupportedException();

        public IDataView Transform(IDataView input) => input;

        void ICanSaveModel.Save(ModelSaveContext ctx) => throw new IOException(Message);
    }

    /// <summary>Passes writes through until <c>failAfterBytes</c>, then throws as a full disk does.</summary>
    private sealed class FullDiskStream(Stream inner, long failAfterBytes) : Stream
    {
        private long _written;

        public override bool CanRead => false;
        public override bool CanSeek => inner.CanSeek;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
        public override void SetLength(long value) => inner.SetLength(value);

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_written + buffer.Length > failAfterBytes) throw new IOException("No space left on device");
            _written += buffer.Length;
            inner.Write(buffer);
        }
    }
}
