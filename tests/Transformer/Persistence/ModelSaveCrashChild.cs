using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Runtime;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Persistence;

/// <summary>
/// The child process of <see cref="ModelSaveKillTests"/> (the test assembly started with <see cref="PathVariable"/> set,
/// as <see cref="Model.Training.Checkpoints.TrainingCrashChild"/> does): saves the same tiny model with
/// <c>mlContext.Qwen3Moe().SaveModel</c> onto the zip again and again, printing <c>saving N</c> before and
/// <c>saved N ms</c> after each save, until killed.
/// </summary>
internal static class ModelSaveCrashChild
{
    public const string PathVariable = "QWEN3MOE_TEST_SAVE_CRASH_CHILD_ZIP";
    public const string ParentVariable = "QWEN3MOE_TEST_SAVE_CRASH_CHILD_PARENT";
    public const long Seed = 7;

    /// <summary>The model every child saves (the test scores the same one): tiny, reading token ids (vocabulary 64), so a save takes milliseconds.</summary>
    public static Qwen3MoeTransformer Model(MLContext ml)
    {
        var p = TestModels.TinyTextParameters();
        p = p with { Model = p.Model with { SplitVocabSize = new Dictionary<string, int> { [Qwen3MoeParameters.DefaultSplitName] = 64 } } };
        return new Qwen3MoeTransformer(ml, StagedModel.Build(p, null, Seed, new[] { CPU }, ScalarType.Float32), null, null,
            new Qwen3MoeScoringOptions { TokenIdsColumnName = "Ids" });
    }

    /// <summary>The rows the test scores.</summary>
    public static IDataView Data(MLContext ml) => ml.Data.LoadFromEnumerable(new[] { new IdsRow { Ids = new[] { 1, 5, 9, 2, 33, 7 } } });

    /// <summary>A row of token ids.</summary>
    public sealed class IdsRow
    {
        /// <summary>The token ids.</summary>
        [Microsoft.ML.Data.VectorType]
        public int[] Ids { get; set; } = Array.Empty<int>();
    }

#pragma warning disable CA2255 // intended: the test assembly doubles as the child process's program
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void RunIfRequested()
    {
        var path = Environment.GetEnvironmentVariable(PathVariable);
        if (string.IsNullOrEmpty(path)) return;
        int code = 0;
        try
        {
            Run(path, int.Parse(Environment.GetEnvironmentVariable(ParentVariable) ?? "0", CultureInfo.InvariantCulture));
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            code = 3;
        }
        Environment.Exit(code);
    }

    private static void Run(string path, int parent)
    {
        var ml = new MLContext(seed: 1);
        using var model = Model(ml);
        var schema = Data(ml).Schema;
        var clock = Stopwatch.StartNew();
        var save = new Stopwatch();
        // bounded, and stops when the test process is gone, so a crashed test never leaves a child running
        for (int i = 1; clock.Elapsed < TimeSpan.FromSeconds(60) && (parent == 0 || Directory.Exists($"/proc/{parent}") || !OperatingSystem.IsLinux()); i++)
        {
            Console.WriteLine($"saving {i}");
            save.Restart();
            ml.Qwen3Moe().SaveModel(model, schema, path);
            Console.WriteLine($"saved {i} {save.Elapsed.TotalMilliseconds.ToString("F2", CultureInfo.InvariantCulture)}");
        }
    }
}
