using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training.Checkpoints;

/// <summary>The series of checkpoints: cadence, retention, newest complete one, leftovers of interrupted saves.</summary>
public class TrainingCheckpointerTests : CheckpointTestBase
{
    private readonly List<string> _log = new();

    private TrainingCheckpointer NewCheckpointer(int every = 2, int keep = 2) =>
        new(new TrainingCheckpointerOptions { Directory = Files.PathOf("run"), SaveEverySteps = every, KeepLast = keep, Log = _log.Add });

    private string[] Folders() => Directory.GetDirectories(Files.PathOf("run")).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToArray();

    [Test]
    public void SavesEveryNStepsAndKeepsTheNewestN()
    {
        var checkpointer = NewCheckpointer(every: 2, keep: 2);
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10));
        var saved = new List<string?>();
        for (int s = 0; s < 7; s++)
        {
            t.TrainUntil(s + 1);
            saved.Add(checkpointer.SaveIfDue(t.Executor, t.Trainer, new DataPosition(0, s + 1)));
        }
        Assert.That(saved.Select(p => p is null ? null : Path.GetFileName(p)),
            Is.EqualTo(new[] { null, "step-00000002", null, "step-00000004", null, "step-00000006", null }));
        Assert.That(Folders(), Is.EqualTo(new[] { "step-00000004", "step-00000006" }));
        Assert.That(checkpointer.FindLatest(), Is.EqualTo(Files.PathOf("run/step-00000006")));
    }

    [Test]
    public void EmptyFolderRestoresNothing()
    {
        var checkpointer = NewCheckpointer();
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10));
        Assert.That(checkpointer.TryRestoreLatest(t.Executor, t.Trainer, out var position), Is.False);
        Assert.That(position, Is.Null);
        Assert.That(checkpointer.FindLatest(), Is.Null);
    }

    [TestCase("no manifest")]
    [TestCase("truncated weights")]
    [TestCase("damaged state")]
    public void IncompleteOrDamagedNewestIsSkippedForTheNextOlder(string damage)
    {
        var checkpointer = NewCheckpointer(every: 1, keep: 3);
        using (var t = new TinyTraining(seed: 3, TinyTraining.Options(10)))
            for (int s = 1; s <= 3; s++)
            {
                t.TrainUntil(s);
                checkpointer.Save(t.Executor, t.Trainer, new DataPosition(0, s));
            }
        var newest = Files.PathOf("run/step-00000003");
        switch (damage)
        {
            case "no manifest": File.Delete(Path.Combine(newest, "manifest.json")); break;
            case "truncated weights": TruncateHalf(Path.Combine(newest, "model.safetensors")); break;
            default:
                var bytes = File.ReadAllBytes(Path.Combine(newest, "trainer_state.safetensors"));
                bytes[^1] ^= 1;
                File.WriteAllBytes(Path.Combine(newest, "trainer_state.safetensors"), bytes);
                break;
        }
        Assert.That(checkpointer.FindLatest(), Is.EqualTo(Files.PathOf("run/step-00000002")));
        using var fresh = new TinyTraining(seed: 4, TinyTraining.Options(10));
        Assert.That(checkpointer.TryRestoreLatest(fresh.Executor, fresh.Trainer, out var position), Is.True);
        Assert.That(position, Is.EqualTo(new DataPosition(0, 2)));
        Assert.That(fresh.Trainer.Step, Is.EqualTo(2));
        Assert.That(_log, Has.Some.Contains("step-00000003"));

        // Continuing from step 2 replaces the damaged step-3 checkpoint.
        fresh.TrainUntil(3);
        checkpointer.Save(fresh.Executor, fresh.Trainer, new DataPosition(0, 3));
        Assert.That(TrainingCheckpoint.Verify(newest), Is.EqualTo(3));
    }

    [Test]
    public void LeftoversOfInterruptedSavesAreRemovedAndAnInterruptedReplacementIsPutBack()
    {
        var checkpointer = NewCheckpointer(every: 1, keep: 5);
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10));
        t.TrainUntil(1);
        checkpointer.Save(t.Executor, t.Trainer, new DataPosition(0, 1));
        t.TrainUntil(2);
        checkpointer.Save(t.Executor, t.Trainer, new DataPosition(0, 2));
        // A save of step 3 killed while writing, and a replacement of step 2 killed between its two renames.
        var tmp = Files.PathOf($"run/.step-00000003.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(tmp);
        File.WriteAllBytes(Path.Combine(tmp, "model.safetensors"), new byte[100]);
        Directory.Move(Files.PathOf("run/step-00000002"), Files.PathOf($"run/.step-00000002.{Guid.NewGuid():N}.old"));
        Assert.That(checkpointer.FindLatest(), Is.EqualTo(Files.PathOf("run/step-00000001")), "hidden folders never load");

        using var fresh = new TinyTraining(seed: 4, TinyTraining.Options(10));
        Assert.That(checkpointer.TryRestoreLatest(fresh.Executor, fresh.Trainer, out var position), Is.True);
        Assert.That(position!.BatchIndex, Is.EqualTo(2), "the interrupted replacement's previous folder was put back");
        Assert.That(Folders(), Is.EqualTo(new[] { "step-00000001", "step-00000002" }));
    }

    [Test]
    public void SavingBelowACompleteLaterCheckpointIsRefused()
    {
        var checkpointer = NewCheckpointer(every: 1);
        using (var t = new TinyTraining(seed: 3, TinyTraining.Options(10)))
        {
            t.TrainUntil(3);
            checkpointer.Save(t.Executor, t.Trainer, DataPosition.Start);
        }
        using var other = new TinyTraining(seed: 3, TinyTraining.Options(10));
        other.TrainUntil(1);
        var e = Assert.Throws<InvalidOperationException>(() => checkpointer.Save(other.Executor, other.Trainer, DataPosition.Start))!;
        Assert.That(e.Message, Does.Contain("step 3").And.Contain("another run"));
        Assert.That(Folders(), Is.EqualTo(new[] { "step-00000003" }));
    }

    private void SaveSteps(TrainingCheckpointer checkpointer, int steps)
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10));
        for (int s = 1; s <= steps; s++)
        {
            t.TrainUntil(s);
            checkpointer.Save(t.Executor, t.Trainer, new DataPosition(0, s));
        }
    }

    private static void FlipLastByte(string path)
    {
        var bytes = File.ReadAllBytes(path);
        bytes[^1] ^= 1;
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>
    /// When every checkpoint is damaged, resuming refuses (naming each one and its problem) and deletes nothing, rather
    /// than silently starting from step 0 and deleting them at the first save; StartFresh is the explicit way to do that.
    /// </summary>
    [Test]
    public void AllCheckpointsDamagedRefusesToStartUnlessAskedToStartFresh()
    {
        SaveSteps(NewCheckpointer(every: 1, keep: 2), 2);
        FlipLastByte(Files.PathOf("run/step-00000001/model.safetensors"));
        File.Delete(Files.PathOf("run/step-00000002/manifest.json"));

        using var fresh = new TinyTraining(seed: 4, TinyTraining.Options(10));
        var e = Assert.Throws<InvalidDataException>(() => NewCheckpointer().TryRestoreLatest(fresh.Executor, fresh.Trainer, out _))!;
        Assert.That(e.Message, Does.Contain("step-00000001").And.Contain("'model.safetensors' does not match its SHA-256")
            .And.Contain("step-00000002").And.Contain("no manifest.json").And.Contain("StartFresh"));
        Assert.That(Folders(), Is.EqualTo(new[] { "step-00000001", "step-00000002" }), "nothing deleted");
        Assert.That(fresh.Trainer.Step, Is.Zero);

        var startFresh = new TrainingCheckpointer(NewCheckpointer().Options with { OnDamagedCheckpoints = DamagedCheckpointPolicy.StartFresh });
        Assert.That(startFresh.TryRestoreLatest(fresh.Executor, fresh.Trainer, out var position), Is.False);
        Assert.That(position, Is.Null);
        Assert.That(_log, Has.Some.Contains("Starting from step 0"));
        fresh.TrainUntil(1);
        startFresh.Save(fresh.Executor, fresh.Trainer, new DataPosition(0, 1));
        Assert.That(Folders(), Is.EqualTo(new[] { "step-00000001" }), "the damaged ones are replaced or deleted at the first save");
        Assert.That(TrainingCheckpoint.Verify(Files.PathOf("run/step-00000001")), Is.EqualTo(1));
    }

    /// <summary>A manifest whose step is not the one its folder is named for (e.g. 2^31-2 in step-00000002) is damaged, never resumed.</summary>
    [TestCase(2147483646)]
    [TestCase(1)]
    public void AManifestWhoseStepIsNotTheFoldersIsSkippedAsDamaged(int step)
    {
        SaveSteps(NewCheckpointer(every: 1, keep: 2), 2);
        SetManifestStep(Files.PathOf("run/step-00000002"), step);
        Assert.That(NewCheckpointer().FindLatest(), Is.EqualTo(Files.PathOf("run/step-00000001")));
        using var fresh = new TinyTraining(seed: 4, TinyTraining.Options(10));
        Assert.That(NewCheckpointer().TryRestoreLatest(fresh.Executor, fresh.Trainer, out var position), Is.True);
        Assert.That(fresh.Trainer.Step, Is.EqualTo(1));
        Assert.That(position, Is.EqualTo(new DataPosition(0, 1)));
        Assert.That(_log, Has.Some.Contains($"says step {step}, but the folder is named for step 2"));
    }

    [TestCase("2147483647", "not an integer in [0, 2147483646]")]
    [TestCase("-1", "not an integer in [0, 2147483646]")]
    [TestCase("1e3", "not an integer")]
    public void AnImpossibleManifestStepIsRejected(string step, string message)
    {
        SaveSteps(NewCheckpointer(every: 1, keep: 2), 1);
        var manifest = Files.PathOf("run/step-00000001/manifest.json");
        File.WriteAllText(manifest, System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(manifest), "\"step\": [0-9]+", $"\"step\": {step}"));
        var e = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Verify(Files.PathOf("run/step-00000001")))!;
        Assert.That(e.Message, Does.Contain("'step'").And.Contain(message));
    }

    [Test]
    public void ACheckpointBeyondTheRunsTotalStepsIsRefused()
    {
        SaveSteps(NewCheckpointer(every: 1, keep: 1), 4);
        using var shorter = new TinyTraining(seed: 4, TinyTraining.Options(3));
        var e = Assert.Throws<ArgumentException>(() => NewCheckpointer().TryRestoreLatest(shorter.Executor, shorter.Trainer, out _))!;
        Assert.That(e.Message, Does.Contain("step 4").And.Contain("beyond the 3 steps"));
        Assert.That(shorter.Trainer.Step, Is.Zero, "nothing restored");
    }

    /// <summary>An optimizer step count above the checkpoint's step is impossible (one update per step at most): damaged, skipped for the older one.</summary>
    [Test]
    public void AnOptimizerStepAboveTheCheckpointsStepIsSkippedAsDamaged()
    {
        SaveSteps(NewCheckpointer(every: 1, keep: 2), 2);
        var folder = Files.PathOf("run/step-00000002");
        var state = Path.Combine(folder, "trainer_state.safetensors");
        string key;
        var tensors = new List<KeyValuePair<string, TorchSharp.torch.Tensor>>();
        using (var scope = TorchSharp.torch.NewDisposeScope())
        {
            using (var file = Microsoft.ML.Qwen3Moe.Safetensors.SafetensorsFile.Open(state))
            {
                key = file.Entries.Keys.First(k => k.EndsWith(".step", StringComparison.Ordinal));
                foreach (var k in file.Entries.Keys) tensors.Add(new(k, k == key ? TorchSharp.torch.tensor(99L) : file.ReadTensor(k)));
            }
            Microsoft.ML.Qwen3Moe.Safetensors.SafetensorsWriter.Write(state, tensors);
        }
        var (bytes, sha) = TrainingCheckpointManifest.Describe(state);
        var manifest = Path.Combine(folder, "manifest.json");
        File.WriteAllText(manifest, System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(manifest),
            "(\"trainer_state.safetensors\": \\{\\s*\"bytes\": )[0-9]+(,\\s*\"sha256\": " +
            "\")[0-9a-f]+", m => $"{m.Groups[1].Value}{bytes}{m.Groups[2].Value}{sha}"));
        Assert.That(TrainingCheckpoint.Verify(folder), Is.EqualTo(2), "the files match the manifest: only the value is impossible");

        using var fresh = new TinyTraining(seed: 4, TinyTraining.Options(10));
        Assert.That(NewCheckpointer().TryRestoreLatest(fresh.Executor, fresh.Trainer, out _), Is.True);
        Assert.That(fresh.Trainer.Step, Is.EqualTo(1));
        Assert.That(_log, Has.Some.Contains($"'{key}' in trainer_state.safetensors is 99, outside [0, 2]"));
    }

    private static void SetManifestStep(string folder, int step)
    {
        var manifest = Path.Combine(folder, "manifest.json");
        File.WriteAllText(manifest, System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(manifest), "\"step\": [0-9]+", $"\"step\": {step}"));
    }

    [Test]
    public void InvalidOptionsAreNamed()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => NewCheckpointer(every: 0))!.ParamName, Is.EqualTo("SaveEverySteps"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => NewCheckpointer(keep: 0))!.ParamName, Is.EqualTo("KeepLast"));
        Assert.Throws<ArgumentException>(() => new TrainingCheckpointer(new TrainingCheckpointerOptions { Directory = " " }));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(()
            => new TrainingCheckpointer(NewCheckpointer().Options with { OnDamagedCheckpoints = (DamagedCheckpointPolicy)7 }))!.ParamName,
            Is.EqualTo("OnDamagedCheckpoints"));
    }

    private static void TruncateHalf(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.SetLength(f.Length / 2);
    }
}
