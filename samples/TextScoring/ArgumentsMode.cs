using Microsoft.ML;
using Microsoft.ML.Qwen3Moe;

namespace TextScoring;

/// <summary>The sample with arguments: load (or create), optionally fine-tune on a file, optionally score a file, optionally save.</summary>
internal static class ArgumentsMode
{
    private sealed class Line
    {
        public string Text { get; set; } = "";
    }

    public static int Run(CommandLine cl)
    {
        var mlContext = new MLContext(seed: 1);
        ConsoleLog.Attach(mlContext);
        if (cl.Adapter is not null && (cl.Model is null || !Directory.Exists(cl.Model)))
            throw new UserError($"--adapter {cl.Adapter} applies to a Hugging Face base folder: give it with --model.");
        ITransformer? model = cl.Model is null ? null : Load(mlContext, cl.Model, cl.Tokenizer, cl.Adapter);
        try
        {
            if (cl.Train is not null)
            {
                var lines = ReadLines(cl.Train);
                var options = new Qwen3MoeEstimator.Options { MaxEpochs = 1, LogEveryNStep = 5 };
                if (cl.Model is not null && Directory.Exists(cl.Model))
                {
                    options.ModelPath = cl.Model;
                    options.TokenizerPath = cl.Tokenizer;
                    if (cl.Adapter is not null || cl.Lora)
                    {
                        // LoRA on the frozen base (continuing --adapter, or new adapters with --lora); --out <folder> then writes a PEFT folder
                        options.FineTuning = Qwen3MoeFineTuning.LoRA;
                        options.AdapterPath = cl.Adapter;
                    }
                }
                else if (cl.Model is null)
                {
                    options.NewModel = DemoModel.Parameters;
                    options.TokenizerPath = cl.Tokenizer ?? DemoModel.TokenizerFolder;
                    options.LearningRate = 1e-2;
                }
                else throw new UserError($"{cl.Model}: --train starts from a Hugging Face folder (or from the built-in demo model without --model), not " +
                    $"from a saved .zip.");
                Console.WriteLine($"Fine-tuning on {lines.Length} lines of {cl.Train}:");
                var data = mlContext.Data.LoadFromEnumerable(lines.Select(l => new Line { Text = l }).ToList());
                var fitted = mlContext.Qwen3Moe().FineTune(options).Fit(data);
                (model as IDisposable)?.Dispose();
                model = fitted;
            }
            if (model is null) throw new UserError($"nothing to score with: give --model or --train. {CommandLine.Usage}");
            if (cl.Score is not null)
            {
                var lines = ReadLines(cl.Score);
                var (ppl, _, tokens, mean) = ScoreTable.Score(mlContext, model, lines);
                Console.WriteLine($"Perplexity of the lines of {cl.Score}:");
                ScoreTable.Print(lines, ("tokens", tokens.Select(t => t.ToString()).ToArray()), ("perplexity", ScoreTable.Cells(ppl)));
                if (cl.ScoresOut is not null)
                {
                    ScoresFile.Write(cl.ScoresOut, lines, tokens, mean, ppl);
                    Console.WriteLine($"Wrote {lines.Length} scored lines (JSON Lines): {cl.ScoresOut}");
                }
            }
            if (cl.Out is not null) Save(mlContext, model, cl.Out);
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    private static ITransformer Load(MLContext mlContext, string path, string? tokenizer, string? adapter)
    {
        if (tokenizer is not null && !Directory.Exists(tokenizer)) throw new UserError($"{tokenizer}: no such tokenizer folder.");
        if (adapter is not null && !Directory.Exists(adapter)) throw new UserError($"{adapter}: no such adapter folder.");
        if (Directory.Exists(path)) return mlContext.Qwen3Moe().LoadHuggingFace(path, tokenizerPath: tokenizer, adapterPath: adapter);
        if (!File.Exists(path)) throw new UserError($"{path}: no such file or folder.");
        if (tokenizer is not null) throw new UserError($"{path}: a saved .zip carries its own tokenizer; --tokenizer is for a Hugging Face folder.");
        try
        {
            return mlContext.Qwen3Moe().LoadModel(path, out _);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new UserError($"{path}: not a loadable ML.NET model zip ({e.Message})", e);
        }
    }

    private static void Save(MLContext mlContext, ITransformer model, string path)
    {
        if (path.EndsWith(".zip", StringComparison.OrdinalIgnoreCase))
        {
            var schema = mlContext.Data.LoadFromEnumerable(Array.Empty<Line>()).Schema;
            mlContext.Qwen3Moe().SaveModel(model, schema, path);
            Console.WriteLine($"Saved the ML.NET model: {path}");
        }
        else if (model is Qwen3MoeTransformer { HasAdapters: true } lora)
        {
            lora.ExportAdapter(path);
            Console.WriteLine($"Exported a PEFT adapter folder (base: {lora.BaseModelPath}): {path}");
        }
        else if (model is Qwen3MoeTransformer q)
        {
            q.ExportHuggingFace(path);
            Console.WriteLine($"Exported a Hugging Face folder: {path}");
        }
        else throw new UserError($"{path}: only a .zip can hold this model (it is a chain of transforms).");
    }

    private static string[] ReadLines(string path)
    {
        if (!File.Exists(path)) throw new UserError($"{path}: no such file.");
        return File.ReadAllLines(path).Where(l => l.Length > 0).ToArray();
    }
}
