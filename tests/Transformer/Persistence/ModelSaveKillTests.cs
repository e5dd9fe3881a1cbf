using System.Globalization;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Persistence;

/// <summary>
/// Kills a child process (<see cref="ModelSaveCrashChild"/>) at random moments of <c>mlContext.Qwen3Moe().SaveModel</c>
/// onto an existing zip, until 4 kills have landed inside a save. After each kill the zip at the path loads and scores
/// exactly as the model does, and what killed saves left (the hidden temp zip beside the target, the scratch folder
/// under the child's temp folder) is gone once a later save has run: only the last killed child's may remain.
/// </summary>
public class ModelSaveKillTests : CheckpointTestBase
{
    private const int KillsInsideASave = 4;
    private const int MaxKills = 16;

    [Test]
    public void KillingASaveOntoAnExistingZipNeverDamagesItOrLeaksTempFiles()
    {
        var ml = new MLContext(seed: 1);
        var zip = Files.PathOf("model.zip");
        var temp = Directory.CreateDirectory(Files.PathOf("tmp")).FullName; // the children's $TMPDIR
        float[] expected;
        using (var model = ModelSaveCrashChild.Model(ml))
        {
            expected = TestModels.Floats(model.Transform(ModelSaveCrashChild.Data(ml)), "MeanLogProbability");
            ml.Qwen3Moe().SaveModel(model, ModelSaveCrashChild.Data(ml).Schema, zip);
        }
        var random = new Random(11);
        double saveMs = 50;
        int insideSave = 0, kill = 0;
        for (; kill < MaxKills && insideSave < KillsInsideASave; kill++)
        {
            var (lines, stderr, pid) = RunAndKill(zip, temp, random, ref saveMs);
            Assert.That(stderr, Is.Empty, $"kill {kill}: the child reported an error");
            if (lines.Last().StartsWith("saving ", StringComparison.Ordinal)) insideSave++;

            Assert.That(Score(zip), Is.EqualTo(expected), $"kill {kill}: the zip at the path loads and scores as the model does");
            var leftovers = Directory.GetFileSystemEntries(Files.Root).Select(Path.GetFileName).Where(n => n is not "model.zip" and not "tmp").ToList();
            Assert.That(leftovers, Has.All.StartWith($".model.zip.{pid}-"), $"kill {kill}: only the last child's temp zip may be left (earlier ones are " +
                $"removed by later saves)");
            Assert.That(Directory.GetDirectories(temp, "qwen3moe-save-*").Select(Path.GetFileName), Has.All.StartWith($"qwen3moe-save-{pid}-"),
                $"kill {kill}: only the last child's scratch folder may be left");
        }
        TestContext.Out.WriteLine($"{kill} kills, {insideSave} inside a save (mean save {saveMs:F0} ms)");
        Assert.That(insideSave, Is.EqualTo(KillsInsideASave), $"only {insideSave} of {kill} kills landed inside a save");
    }

    private static float[] Score(string zip)
    {
        var fresh = new MLContext(seed: 2);
        fresh.ComponentCatalog.RegisterQwen3Moe();
        var loaded = fresh.Model.Load(zip, out _);
        try
        {
            return TestModels.Floats(loaded.Transform(ModelSaveCrashChild.Data(fresh)), "MeanLogProbability");
        }
        finally
        {
            (loaded as IDisposable)?.Dispose();
        }
    }

    /// <summary>Starts a child, lets it save once or twice, kills it at a random point of the next save, and returns its output and pid.</summary>
    private static (List<string> Lines, string Stderr, int Pid) RunAndKill(string zip, string temp, Random random, ref double saveMs)
    {
        using var child = ChildProcess.Start(new Dictionary<string, string>
        {
            [ModelSaveCrashChild.PathVariable] = zip,
            [ModelSaveCrashChild.ParentVariable] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture),
            ["TMPDIR"] = temp + Path.DirectorySeparatorChar,
        });
        try
        {
            int savesBeforeKill = random.Next(2, 4);
            for (int seen = 0; seen < savesBeforeKill;)
            {
                var line = child.Next(TimeSpan.FromSeconds(120));
                if (line.StartsWith("saving ", StringComparison.Ordinal)) seen++;
                else if (line.StartsWith("saved ", StringComparison.Ordinal))
                    saveMs = 0.7 * saveMs + 0.3 * double.Parse(line.Split(' ')[2], CultureInfo.InvariantCulture);
            }
            Thread.Sleep(TimeSpan.FromMilliseconds(random.NextDouble() * 0.9 * saveMs));
        }
        finally
        {
            child.Kill();
        }
        return (child.Lines, child.Stderr, child.Id);
    }
}
