using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using Microsoft.ML.Qwen3Moe.Training;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training.Checkpoints;

/// <summary>
/// The child process of <see cref="TrainingCheckpointKillTests"/>: this test assembly itself, started as
/// <c>dotnet exec Microsoft.ML.Qwen3Moe.Tests.dll</c> with <see cref="DirectoryVariable"/> set.
/// </summary>
/// <remarks>
/// Microsoft.NET.Test.Sdk makes a test project an executable with an empty generated <c>Main</c>, and a module
/// initializer runs before <c>Main</c>. So when the variable is set, <see cref="RunIfRequested"/> takes over the process:
/// it resumes from the newest complete checkpoint, then trains and checkpoints every step until killed, printing
/// <c>saving N</c> before and <c>saved N ms</c> after each save. In the test host (variable unset) it does nothing.
/// No extra project is needed and a child starts in about a second.
/// </remarks>
internal static class TrainingCrashChild
{
    public const string DirectoryVariable = "QWEN3MOE_TEST_TRAINING_CRASH_CHILD_DIR";
    public const string ParentVariable = "QWEN3MOE_TEST_TRAINING_CRASH_CHILD_PARENT";

    /// <summary>The child's (and the test's reference run's) training options.</summary>
    public static TrainingOptions Options => TinyTraining.Options(100_000);

    public const long Seed = 21;

    public static TrainingCheckpointerOptions CheckpointerOptions(string directory) =>
        new() { Directory = directory, SaveEverySteps = 1, KeepLast = 2 };

#pragma warning disable CA2255 // intended: the test assembly doubles as the child process's program
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void RunIfRequested()
    {
        var directory = Environment.GetEnvironmentVariable(DirectoryVariable);
        if (string.IsNullOrEmpty(directory)) return;
        int code = 0;
        try
        {
            Run(directory, int.Parse(Environment.GetEnvironmentVariable(ParentVariable) ?? "0", CultureInfo.InvariantCulture));
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            code = 3;
        }
        Environment.Exit(code);
    }

    private static void Run(string directory, int parent)
    {
        using var t = new TinyTraining(Seed, Options);
        var checkpointer = new TrainingCheckpointer(CheckpointerOptions(directory));
        checkpointer.TryRestoreLatest(t.Executor, t.Trainer, out _);
        Console.WriteLine($"resumed {t.Trainer.Step}");
        var clock = Stopwatch.StartNew();
        var save = new Stopwatch();
        // Bounded, and stops when the test process is gone, so a crashed test never leaves a child running.
        while (clock.Elapsed < TimeSpan.FromSeconds(60) && IsAlive(parent))
        {
            t.TrainUntil(t.Trainer.Step + 1);
            Console.WriteLine($"saving {t.Trainer.Step}");
            save.Restart();
            checkpointer.Save(t.Executor, t.Trainer, new DataPosition(0, t.Trainer.Step));
            Console.WriteLine($"saved {t.Trainer.Step} {save.Elapsed.TotalMilliseconds.ToString("F2", CultureInfo.InvariantCulture)}");
        }
    }

    private static bool IsAlive(int pid)
    {
        if (pid == 0) return true;
        if (OperatingSystem.IsLinux()) return Directory.Exists($"/proc/{pid}");
        try
        {
            using var p = Process.GetProcessById(pid);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
