using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training;

/// <summary>
/// Training, checkpointing, restoring and scoring leave no tensor behind: the thread's live-tensor count is the same
/// after M more steps as after warm-up (exact and cheap, so a leak of one tensor per step fails). Resident memory is only
/// printed here (a test process's RSS is too noisy for a tight bound); the <c>memory</c> benchmark measures it over
/// 500 steps and 10,000 rows and fails above its bound.
/// </summary>
public class MemoryFlatnessTests : CheckpointTestBase
{
    private static long LiveTensors => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    [Test]
    public void TrainingAndCheckpointingKeepTheLiveTensorCountFlat()
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(1000));
        var checkpointer = new TrainingCheckpointer(new TrainingCheckpointerOptions { Directory = Files.PathOf("run"), SaveEverySteps = 5, KeepLast = 1 });
        void Steps(int n)
        {
            for (int i = 0; i < n; i++)
            {
                using var scope = NewDisposeScope();
                t.Trainer.TrainStep(TinyTraining.Batches(t.Trainer.Step, micro: 2));
                checkpointer.SaveIfDue(t.Executor, t.Trainer, new DataPosition(0, t.Trainer.Step));
            }
        }
        Steps(10);
        long live = LiveTensors;
        long rss = Rss();
        Steps(20);
        long growth = Rss() - rss;
        TestContext.Out.WriteLine($"live tensors {live} -> {LiveTensors}; RSS growth over 20 steps {growth / 1024} KiB");
        Assert.That(LiveTensors, Is.EqualTo(live), "tensors left alive by 20 training steps and 4 checkpoints");
    }

    [Test]
    public void RestoringKeepsTheLiveTensorCountFlat()
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(1000));
        t.TrainUntil(2);
        var folder = Files.PathOf("ckpt");
        TrainingCheckpoint.Save(folder, t.Executor, t.Trainer, DataPosition.Start);
        TrainingCheckpoint.Restore(folder, t.Executor, t.Trainer);
        long live = LiveTensors;
        for (int i = 0; i < 10; i++) TrainingCheckpoint.Restore(folder, t.Executor, t.Trainer);
        Assert.That(LiveTensors, Is.EqualTo(live));
    }

    [Test]
    public void ScoringKeepsTheLiveTensorCountFlat()
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10));
        void Score(int batches)
        {
            for (int i = 0; i < batches; i++)
            {
                using var scope = NewDisposeScope();
                var nll = t.Executor.Score(TinyTraining.Batch(i, rows: 8, length: 16));
                Assert.That(nll.sum().item<float>(), Is.GreaterThan(0f), "the scores are alive and positive");
            }
        }
        Score(10);
        long live = LiveTensors;
        long rss = Rss();
        Score(100); // 800 rows
        long growth = Rss() - rss;
        TestContext.Out.WriteLine($"live tensors {live} -> {LiveTensors}; RSS growth over 800 rows {growth / 1024} KiB");
        Assert.That(LiveTensors, Is.EqualTo(live), "tensors left alive by scoring");
    }

    /// <summary>Resident set size after a full garbage collection.</summary>
    internal static long Rss()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var p = Process.GetCurrentProcess();
        return p.WorkingSet64;
    }
}
