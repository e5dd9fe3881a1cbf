using System.Globalization;
using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training.Checkpoints;

/// <summary>
/// Kills a training child process (see <see cref="TrainingCrashChild"/>) at random moments of its checkpoint saves, again
/// and again (until 10 kills have landed inside a save), each child resuming from what the previous one left. After each
/// kill: every folder under a checkpoint name verifies, the newest is the last one the child reported saved (or the one
/// after), and it restores to exactly the weights of an uninterrupted in-process run at that step.
/// </summary>
public class TrainingCheckpointKillTests : CheckpointTestBase
{
    private const int KillsInsideASave = 10;
    private const int MaxKills = 40;

    [Test]
    public void KillingTheTrainerMidSaveAlwaysLeavesTheLastCompleteCheckpointAndNeverAHalfWrittenOne()
    {
        var directory = Files.PathOf("run");
        var random = new Random(7);
        using var reference = new TinyTraining(TrainingCrashChild.Seed, TrainingCrashChild.Options); // the uninterrupted run
        int lastSaved = 0, latest = 0, insideSave = 0, kill = 0;
        double saveMs = 10;
        for (; kill < MaxKills && insideSave < KillsInsideASave; kill++)
        {
            var (lines, stderr) = RunAndKill(directory, random, ref saveMs, out var resumed, out bool killedInsideSave);
            Assert.That(resumed, Is.EqualTo(latest), $"kill {kill}: the child resumed from the newest complete checkpoint");
            if (killedInsideSave) insideSave++;
            // The newest checkpoint known complete: the last one a child reported saved, or the one found after the last kill
            // (a kill after the rename but before the report leaves a complete checkpoint nobody reported).
            lastSaved = latest;
            foreach (var l in lines.Where(l => l.StartsWith("saved ", StringComparison.Ordinal)))
                lastSaved = Math.Max(lastSaved, int.Parse(l.Split(' ')[1], CultureInfo.InvariantCulture));
            Assert.That(stderr, Is.Empty, $"kill {kill}: the child reported an error");

            // No folder under a checkpoint name is ever incomplete: every one verifies.
            foreach (var folder in Directory.GetDirectories(directory).Where(d => Path.GetFileName(d).StartsWith("step-", StringComparison.Ordinal)))
                Assert.DoesNotThrow(() => TrainingCheckpoint.Verify(folder), $"kill {kill}: '{folder}' is under a checkpoint name but does not verify");

            var found = new TrainingCheckpointer(TrainingCrashChild.CheckpointerOptions(directory)).FindLatest();
            if (found is null)
            {
                Assert.That(lastSaved, Is.Zero, $"kill {kill}: checkpoint {lastSaved} was reported saved but none is found");
                continue; // killed inside the very first save: nothing to resume from yet
            }
            latest = TrainingCheckpoint.Verify(found);
            Assert.That(latest, Is.EqualTo(lastSaved).Or.EqualTo(lastSaved + 1),
                $"kill {kill}: the newest complete checkpoint is the last one reported saved (or the one after, if the kill came after its rename)");

            // It loads, and holds exactly the state of the uninterrupted run at that step.
            reference.TrainUntil(latest);
            using var restored = new TinyTraining(seed: 5, TrainingCrashChild.Options);
            Assert.That(TrainingCheckpoint.Restore(found, restored.Executor, restored.Trainer), Is.EqualTo(new DataPosition(0, latest)));
            var expected = reference.Model.UniqueNamedParameters();
            var actual = restored.Model.UniqueNamedParameters();
            for (int i = 0; i < expected.Count; i++)
                TensorAssert.Equal(actual[i].Parameter, expected[i].Parameter, $"kill {kill}, step {latest}: {expected[i].Name}");
        }
        TestContext.Out.WriteLine($"{kill} kills, {insideSave} inside a save (mean save {saveMs:F1} ms); reached step {latest}");
        Assert.That(insideSave, Is.EqualTo(KillsInsideASave), $"only {insideSave} of {kill} kills landed inside a save");
    }

    /// <summary>Starts a child, lets it save a few times, kills it at a random point of a save, and returns its output.</summary>
    private static (List<string> Lines, string Stderr)
        RunAndKill(string directory, Random random, ref double saveMs, out int resumed, out bool killedInsideSave)
    {
        using var child = ChildProcess.Start(new Dictionary<string, string>
        {
            [TrainingCrashChild.DirectoryVariable] = directory,
            [TrainingCrashChild.ParentVariable] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture),
        });
        try
        {
            var first = child.Next(TimeSpan.FromSeconds(60));
            Assert.That(first, Does.StartWith("resumed "), $"stderr: {child.Stderr}");
            resumed = int.Parse(first["resumed ".Length..], CultureInfo.InvariantCulture);
            int savesBeforeKill = random.Next(1, 3);
            for (int seen = 0; seen < savesBeforeKill;)
            {
                var line = child.Next(TimeSpan.FromSeconds(60));
                if (line.StartsWith("saving ", StringComparison.Ordinal)) seen++;
                else if (line.StartsWith("saved ", StringComparison.Ordinal))
                    saveMs = 0.8 * saveMs + 0.2 * double.Parse(line.Split(' ')[2], CultureInfo.InvariantCulture);
            }
            Thread.Sleep(TimeSpan.FromMilliseconds(random.NextDouble() * 0.7 * saveMs)); // the line arrives a little after the save began
        }
        finally
        {
            child.Kill();
        }
        killedInsideSave = child.Lines.Last().StartsWith("saving ", StringComparison.Ordinal);
        return (child.Lines, child.Stderr);
    }
}
