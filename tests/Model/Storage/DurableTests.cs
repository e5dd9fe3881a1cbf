using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Storage;
using Microsoft.ML.Qwen3Moe.Tests.Model.Training;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Storage;

/// <summary>
/// The fsync-the-folder-after-a-rename helper works, and every atomic write (files, model folders, training checkpoints)
/// goes through it for the folder that receives the new name. (That the data reaches the disk before a power loss cannot
/// be tested without cutting the power; the system calls were checked once with strace, see the README.)
/// </summary>
public class DurableTests : CheckpointTestBase
{
    [Test]
    public void SyncingAFolderWorksAndAMissingFolderIsNamed()
    {
        Assert.DoesNotThrow(() => Durable.SyncFolder(Files.Root));
        var missing = Files.PathOf("missing");
        var e = Assert.Throws<IOException>(() => Durable.SyncFolder(missing))!;
        Assert.That(e.Message, Does.Contain(missing));
    }

    [Test]
    public void MovesRenameThenSyncTheFolders()
    {
        var synced = new List<string>();
        using var _ = Durable.ObserveFolderSyncs(synced.Add);
        File.WriteAllText(Files.PathOf("a"), "a");
        Directory.CreateDirectory(Files.PathOf("sub"));
        Durable.MoveFile(Files.PathOf("a"), Files.PathOf("sub/b"));
        Assert.That(File.ReadAllText(Files.PathOf("sub/b")), Is.EqualTo("a"));
        Assert.That(synced, Is.EqualTo(new[] { Files.PathOf("sub"), Files.Root }), "the new name's folder, then the old one's");
        synced.Clear();
        Durable.MoveFolder(Files.PathOf("sub"), Files.PathOf("sub2"));
        Assert.That(synced, Is.EqualTo(new[] { Files.Root }));
    }

    [Test]
    public void AtomicFileSyncsTheTargetsFolder()
    {
        var synced = new List<string>();
        using var _ = Durable.ObserveFolderSyncs(synced.Add);
        AtomicFile.Write(Files.PathOf("x.bin"), s => s.WriteByte(1));
        Assert.That(synced, Is.EqualTo(new[] { Files.Root }));
    }

    [Test]
    public void AModelFolderWriteSyncsItsParentAfterTheSwap()
    {
        using var scope = torch.NewDisposeScope();
        var folder = Files.PathOf("model");
        for (int i = 0; i < 2; i++) // a new folder, then a replacement
        {
            var synced = new List<string>();
            using var _ = Durable.ObserveFolderSyncs(synced.Add);
            CheckpointFolderWriter.Write(folder, [new("w", torch.ones(3))], 1000, new Dictionary<string, string> { ["config.json"] = "{}" });
            Assert.That(synced[^1], Is.EqualTo(Files.Root), $"write {i}: the parent, after the final rename");
            Assert.That(synced.Take(synced.Count - 1), Has.All.StartWith(Files.PathOf(".model.")), $"write {i}: before that, only the staging folder (for " +
                $"each file renamed into it)");
        }
    }

    [Test]
    public void ATrainingCheckpointSaveSyncsItsParentAfterTheSwap()
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10));
        t.TrainUntil(1);
        var synced = new List<string>();
        using var _ = Durable.ObserveFolderSyncs(synced.Add);
        TrainingCheckpoint.Save(Files.PathOf("run/step-1"), t.Executor, t.Trainer, new DataPosition(0, 1));
        Assert.That(synced[^1], Is.EqualTo(Files.PathOf("run")));
        Assert.That(synced.Count(f => f.StartsWith(Files.PathOf("run/.step-1."), StringComparison.Ordinal)), Is.EqualTo(3), "model, state and manifest " +
            "renamed into the staging folder");
    }

    [Test]
    public void StaleTempFilesOfAFileAreRemovedByItsNextWrite()
    {
        var dead = Files.WriteBytes($".x.bin.99999999-{Guid.NewGuid():N}.tmp", new byte[10]);
        var live = Files.WriteBytes($".x.bin.{Environment.ProcessId}-{Guid.NewGuid():N}.tmp", new byte[10]);
        var other = Files.WriteBytes($".y.bin.99999999-{Guid.NewGuid():N}.tmp", new byte[10]);
        AtomicFile.Write(Files.PathOf("x.bin"), s => s.WriteByte(1));
        Assert.That(Directory.GetFiles(Files.Root).Order(), Is.EqualTo(new[] { live, other, Files.PathOf("x.bin") }.Order()));
    }

    [Test]
    public void StaleScratchFoldersOfEndedProcessesAreRemoved()
    {
        var dead = Directory.CreateDirectory(Files.PathOf($"qwen3moe-save-99999999-{Guid.NewGuid():N}")).FullName;
        File.WriteAllText(Path.Combine(dead, "model.safetensors"), "30 MB in real life");
        var live = Directory.CreateDirectory(Files.PathOf($"qwen3moe-save-{Environment.ProcessId}-{Guid.NewGuid():N}")).FullName;
        var other = Directory.CreateDirectory(Files.PathOf($"qwen3moe-load-99999999-{Guid.NewGuid():N}")).FullName;
        ScratchFolder.RemoveStale(Files.Root, "qwen3moe-save");
        Assert.That(Directory.GetDirectories(Files.Root).Order(), Is.EqualTo(new[] { live, other }.Order()));
    }
}
