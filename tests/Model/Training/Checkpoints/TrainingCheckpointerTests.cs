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

    [Test]
    public void InvalidOptionsAreNamed()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => NewCheckpointer(every: 0))!.ParamName, Is.EqualTo("SaveEverySteps"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => NewCheckpointer(keep: 0))!.ParamName, Is.EqualTo("KeepLast"));
        Assert.Throws<ArgumentException>(() => new TrainingCheckpointer(new TrainingCheckpointerOptions { Directory = " " }));
    }

    private static void TruncateHalf(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.SetLength(f.Length / 2);
    }
}
