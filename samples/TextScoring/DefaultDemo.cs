using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Qwen3Moe;
using Microsoft.ML.Qwen3Moe.Training;

namespace TextScoring;

/// <summary>
/// The whole main job with no arguments: a small random Qwen3-MoE with the real tokenizer, fine-tuned with the ML.NET
/// estimator on the bundled corpus, held-out lines scored before and after, the ML.NET model saved, reloaded in a
/// fresh context, and the reloaded scores compared.
/// </summary>
internal static class DefaultDemo
{
    private sealed class Line
    {
        public string Text { get; set; } = "";
    }

    public static int Run(string? outPath)
    {
        var clock = Stopwatch.StartNew();
        var mlContext = new MLContext(seed: 1);
        ConsoleLog.Attach(mlContext);
        var train = File.ReadAllLines(DemoModel.DataFile("train.txt")).Where(l => l.Length > 0).ToArray();
        var heldOut = File.ReadAllLines(DemoModel.DataFile("heldout.txt")).Where(l => l.Length > 0).ToArray();
        Console.WriteLine("Qwen3-MoE text scoring sample (ML.NET estimator + transformer)");
        Console.WriteLine($"Model: new random Qwen3-MoE, {DemoModel.Parameters.Model.NumHiddenLayers} layers, width " +
            $"{DemoModel.Parameters.Model.Layer.HiddenSize}, " +
            $"{DemoModel.Parameters.Model.Layer.NumExperts} experts (top-{DemoModel.Parameters.Model.Layer.ExpertsTopK}), vocabulary " +
                $"{DemoModel.Parameters.Model.VocabSize:N0}; Qwen3 tokenizer");
        Console.WriteLine($"Data: {train.Length} training lines, {heldOut.Length} held-out lines");

        var options = new Qwen3MoeEstimator.Options
        {
            NewModel = DemoModel.Parameters,
            TokenizerPath = DemoModel.TokenizerFolder,
            Seed = 1,
            BatchSize = 10,
            MaxEpochs = 10,
            LearningRate = 1e-2,
            WarmupRatio = 0.1,
            LearningRateSchedule = LearningRateScheduleKind.Cosine,
            MaxSequenceLength = 64,
            LogEveryNStep = 4,
        };
        using var before = mlContext.Qwen3Moe().CreateRandom(DemoModel.Parameters, DemoModel.TokenizerFolder, options.Seed);
        var (pplBefore, _, _, _) = ScoreTable.Score(mlContext, before, heldOut);

        Console.WriteLine("Fine-tuning (mlContext.Qwen3Moe().FineTune(options).Fit(data)):");
        var trainData = mlContext.Data.LoadFromEnumerable(train.Select(t => new Line { Text = t }).ToList());
        using var model = mlContext.Qwen3Moe().FineTune(options).Fit(trainData);
        var (pplAfter, logpsAfter, _, _) = ScoreTable.Score(mlContext, model, heldOut);

        var path = outPath ?? Path.Combine(Directory.CreateTempSubdirectory("qwen3moe-textscoring-").FullName, "model.zip");
        mlContext.Qwen3Moe().SaveModel(model, trainData.Schema, path); // atomic: a kill or a full disk never damages an existing zip
        Console.WriteLine($"Saved the ML.NET model: {path} ({new FileInfo(path).Length / 1e6:F1} MB)");

        var fresh = new MLContext(seed: 2);
        var reloaded = fresh.Qwen3Moe().LoadModel(path, out _);   // registers the Qwen3-MoE loader and loads
        var (pplReloaded, logpsReloaded, _, _) = ScoreTable.Score(fresh, reloaded, heldOut);
        (reloaded as IDisposable)?.Dispose();

        Console.WriteLine("Perplexity of the held-out lines (lower is better):");
        ScoreTable.Print(heldOut, ("before", ScoreTable.Cells(pplBefore)), ("fine-tuned", ScoreTable.Cells(pplAfter)),
            ("reloaded", ScoreTable.Cells(pplReloaded)));
        bool identical = logpsAfter.Zip(logpsReloaded).All(p => p.First.SequenceEqual(p.Second));
        Console.WriteLine($"Reloaded scores identical to the fine-tuned model's: {(identical ? "yes" : "NO")}");
        var routing = model.LastRoutingStatistics;
        Console.WriteLine($"MoE routing of the last scoring pass: {routing.TokensRouted} tokens; busiest expert / mean load per layer: " +
            string.Join(", ", Enumerable.Range(0, routing.SparseLayers.Count).Select(i => $"layer {routing.SparseLayers[i]} {routing.MaxOverMeanLoad(i):F2}")));
        Console.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F0} s.");
        return identical ? 0 : 1;
    }
}
