using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Persistence;

/// <summary>A damaged or crafted model zip fails with a message naming the entry, extracts nothing unbounded and leaves no temp folder.</summary>
public class ModelZipIntegrityTests
{
    private string _temp = null!;
    private string _zip = null!;

    [SetUp]
    public void SetUp()
    {
        _temp = Directory.CreateTempSubdirectory("qwen3moe-zip-tests-").FullName;
        _zip = Path.Combine(_temp, "model.zip");
        var ml = new MLContext(seed: 1);
        using var scorer = TestModels.RandomTextTransformer(ml);
        ml.Model.Save(scorer, TestModels.Texts(ml, "a").Schema, _zip);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_temp, recursive: true);

    /// <summary>Replaces the content of the zip entry whose name ends with <paramref name="suffix"/>.</summary>
    private void Rewrite(string suffix, Func<byte[], byte[]> change)
    {
        using var zip = ZipFile.Open(_zip, ZipArchiveMode.Update);
        var entry = zip.Entries.Single(e => e.FullName.EndsWith("/" + suffix, StringComparison.Ordinal));
        byte[] bytes;
        using (var s = entry.Open())
        using (var m = new MemoryStream())
        {
            s.CopyTo(m);
            bytes = m.ToArray();
        }
        var name = entry.FullName;
        entry.Delete();
        using var w = zip.CreateEntry(name).Open();
        w.Write(change(bytes));
    }

    /// <summary>The exception the caller of <c>mlContext.Model.Load</c> sees.</summary>
    private Exception LoadFails()
    {
        var fresh = new MLContext(seed: 2);
        fresh.ComponentCatalog.RegisterQwen3Moe();
        Exception? caught = null;
        try
        {
            (fresh.Model.Load(_zip, out _) as IDisposable)?.Dispose();
        }
        catch (Exception e)
        {
            caught = e;
        }
        Assert.That(caught, Is.Not.Null, "the load succeeded");
        return caught!;
    }

    [Test]
    public void AFlippedByteInTheWeightsFailsNamingTheEntry()
    {
        Rewrite("model.safetensors", b =>
        {
            b[^100] ^= 0x40;
            return b;
        });
        var e = LoadFails();
        Assert.That(e, Is.Not.InstanceOf<TargetInvocationException>(), "the real error, not the reflection wrapper");
        Assert.That(e.Message, Does.Contain("model.safetensors").And.Contain("SHA-256"));
    }

    [Test]
    public void AnAbsurdManifestValueIsAClearError()
    {
        Rewrite(ModelManifest.StreamName, b =>
        {
            var json = JsonNode.Parse(b)!;
            json["Scoring"]!["ScoringBatchSize"] = int.MaxValue;
            return Encoding.UTF8.GetBytes(json.ToJsonString());
        });
        var e = LoadFails();
        Assert.That(e.Message, Does.Contain("ScoringBatchSize").And.Contain("2147483647"));
    }

    [Test]
    public void AnEntryLargerThanTheManifestSaysIsRefusedWhileStreaming()
    {
        Rewrite("config.json", b => [.. b, .. new byte[20 << 20].Select(_ => (byte)' ')]);
        var e = LoadFails();
        Assert.That(e.Message, Does.Contain("config.json").And.Contain("more than"));
    }

    [Test]
    public void StaleLoadFoldersOfDeadProcessesAreRemovedAndNoneIsLeft()
    {
        using var dead = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        dead.WaitForExit();
        var stale = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), $"{Qwen3MoeModelFile.LoadFolderPrefix}-{dead.Id}-{Guid.NewGuid():N}"));
        File.WriteAllText(Path.Combine(stale.FullName, "model.safetensors"), "left by a killed load");

        var fresh = new MLContext(seed: 2);
        fresh.ComponentCatalog.RegisterQwen3Moe();
        (fresh.Model.Load(_zip, out _) as IDisposable)?.Dispose();
        Assert.That(Directory.Exists(stale.FullName), Is.False, "the dead process's folder is cleaned");
        Assert.That(Directory.GetDirectories(Path.GetTempPath(), $"{Qwen3MoeModelFile.LoadFolderPrefix}-{Environment.ProcessId}-*"), Is.Empty,
            "this load's folder is gone");

        Rewrite("model.safetensors", b => b[..^1]);
        LoadFails();
        Assert.That(Directory.GetDirectories(Path.GetTempPath(), $"{Qwen3MoeModelFile.LoadFolderPrefix}-{Environment.ProcessId}-*"), Is.Empty,
            "also after a failed load");
    }
}
