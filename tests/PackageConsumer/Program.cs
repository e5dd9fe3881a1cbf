// A consumer of the Microsoft.ML.Qwen3Moe package, run by .ci/run in two processes:
//   fit  <tokenizer folder> <work folder>   fine-tunes a tiny new model for 2 steps, scores and evaluates, saves model.zip
//                                           and the probe lines' scores (expected.txt) into the work folder
//   load <work folder>                      loads model.zip in a fresh process (LoadModel), predicts the probe lines with a
//                                           PredictionEngine and checks the scores are those of the fit process
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe;
using Microsoft.ML.Qwen3Moe.Configuration;

string[] corpus =
{
    "The cat sat on the mat.", "The dog sat on the log.", "A cat and a dog sat on the mat.",
    "The cat sat on the mat again.", "The dog sat on the mat too.", "A dog and a cat sat on the log.",
};
string[] probes = { "The cat sat on the log.", "A dog sat on the mat by the door." };

if (args is ["fit", var tokenizer, var work]) return Fit(tokenizer, work);
if (args is ["load", var folder]) return Load(folder);
Console.Error.WriteLine("usage: PackageConsumer fit <tokenizer folder> <work folder> | load <work folder>");
return 2;

int Fit(string tokenizer, string work)
{
    var ml = new MLContext(seed: 1);
    var data = ml.Data.LoadFromEnumerable(corpus.Select(t => new Line { Text = t }));
    var options = new Qwen3MoeEstimator.Options
    {
        NewModel = TinyModel(), TokenizerPath = tokenizer, BatchSize = 3, MaxSteps = 2, LearningRate = 3e-3, WarmupRatio = 0,
        ValidationSet = ml.Data.LoadFromEnumerable(probes.Select(t => new Line { Text = t })),
    };
    var pipeline = ml.Qwen3Moe().FineTune(options).Append(ml.Transforms.CopyColumns("Score", "Perplexity"));
    using var model = pipeline.Fit(data);
    var qwen = model.OfType<Qwen3MoeTransformer>().Single();
    Console.WriteLine($"fit: {qwen.TrainingHistory.Count} steps, losses " +
        $"{string.Join(", ", qwen.TrainingHistory.Select(s => s.Loss.ToString("F4", CultureInfo.InvariantCulture)))}; validation loss " +
        $"{qwen.ValidationHistory[^1].Loss:F4}");
    Check(qwen.TrainingHistory.Count == 2, "2 training steps");
    var metrics = ml.Qwen3Moe().Evaluate(model.Transform(data));
    Console.WriteLine($"fit: evaluate on the training rows: {metrics}");
    Check(metrics.Tokens > 0 && double.IsFinite(metrics.Perplexity), "finite perplexity");

    var engine = ml.Model.CreatePredictionEngine<Line, Scores>(model);
    var lines = probes.Select(p => string.Join(" ", engine.Predict(new Line { Text = p }).LogProbabilities.Select(v => v.ToString("R",
        CultureInfo.InvariantCulture))));
    Directory.CreateDirectory(work);
    File.WriteAllLines(Path.Combine(work, "expected.txt"), lines);
    ml.Model.Save(model, data.Schema, Path.Combine(work, "model.zip"));
    Console.WriteLine($"fit: saved {Path.Combine(work, "model.zip")} ({new FileInfo(Path.Combine(work, "model.zip")).Length / 1e6:F1} MB)");
    return 0;
}

int Load(string work)
{
    var ml = new MLContext(seed: 2);
    var model = ml.Qwen3Moe().LoadModel(Path.Combine(work, "model.zip"), out var schema);
    try
    {
        Check(schema.GetColumnOrNull("Text") is not null, "saved input schema has Text");
        var engine = ml.Model.CreatePredictionEngine<Line, Scores>(model);
        var expected = File.ReadAllLines(Path.Combine(work, "expected.txt"));
        for (int i = 0; i < probes.Length; i++)
        {
            var p = engine.Predict(new Line { Text = probes[i] });
            var got = string.Join(" ", p.LogProbabilities.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
            Check(got == expected[i], $"probe {i}: the reloaded model's log-probabilities equal the fitted model's");
            Console.WriteLine($"load: '{probes[i]}': {p.TokenCount} tokens, perplexity {p.Perplexity:F1} (Score {p.Score:F1}), identical to the fit process");
        }
        return 0;
    }
    finally
    {
        (model as IDisposable)?.Dispose(); // the chain disposes the Qwen3-MoE transformer inside it
    }
}

static void Check(bool ok, string what)
{
    if (!ok) throw new InvalidOperationException($"consumer check failed: {what}");
}

static Qwen3MoeForCausalLMParameters TinyModel() => new()
{
    Model = new Qwen3MoeParameters
    {
        Layer = new Qwen3MoeLayerParameters
        {
            HiddenSize = 32, MoeIntermediateSize = 32, IntermediateSize = 64, NumExperts = 4, ExpertsTopK = 2,
            NumAttentionHeads = 2, NumKeyValueHeads = 1, RmsNormEps = 1e-6, HeadDim = 16,
        },
        NumHiddenLayers = 2,
        RopeBase = 1e6,
        MaxPositionIds = 512,
        SplitVocabSize = new Dictionary<string, int> { [Qwen3MoeParameters.DefaultSplitName] = 151_936 },
        SplitVocabOrder = new[] { Qwen3MoeParameters.DefaultSplitName },
    },
    TieWordEmbeddings = true,
};

internal sealed class Line
{
    public string Text { get; set; } = "";
}

internal sealed class Scores
{
    [VectorType]
    public float[] LogProbabilities { get; set; } = Array.Empty<float>();

    public int TokenCount { get; set; }

    public float Perplexity { get; set; }

    public float Score { get; set; }
}
