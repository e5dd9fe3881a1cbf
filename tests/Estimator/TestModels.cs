using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Qwen3Moe.Runtime;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

/// <summary>A text row for in-memory data views.</summary>
public sealed class TextRow
{
    public string? Text { get; set; }
}

/// <summary>The four score columns as a PredictionEngine output type.</summary>
public sealed class ScoreRow
{
    [VectorType]
    public float[] LogProbabilities { get; set; } = Array.Empty<float>();

    public int TokenCount { get; set; }

    public float MeanLogProbability { get; set; }

    public float Perplexity { get; set; }
}

/// <summary>Tiny models with the real Qwen3 tokenizer (vocab 151,936, width 32), data, and log capture for the ML.NET tests.</summary>
internal static class TestModels
{
    private static readonly Lazy<(TokenizerSource Source, Qwen3Tokenizer Tokenizer)> s_tokenizer = new(() => TokenizerSource.Load(TokenizerFolder));

    public static string TokenizerFolder => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "tokenizer");

    public static string TinyGoldenFolder => GoldenFixture.Tiny.ModelFolder;

    public static readonly string[] Corpus =
    {
        "The cat sat on the mat.",
        "The dog sat on the log.",
        "A cat and a dog sat on the mat.",
        "The cat sat on the mat again.",
        "The dog sat on the mat too.",
        "A dog and a cat sat on the log.",
    };

    /// <summary>A Qwen3-MoE small enough for unit tests, with a vocabulary that fits the Qwen3 tokenizer.</summary>
    public static Qwen3MoeForCausalLMParameters TinyTextParameters(int layers = 2, bool tiedEmbeddings = true) => new()
    {
        Model = new Qwen3MoeParameters
        {
            Layer = new Qwen3MoeLayerParameters
            {
                HiddenSize = 32, MoeIntermediateSize = 32, IntermediateSize = 64, NumExperts = 4, ExpertsTopK = 2,
                NumAttentionHeads = 2, NumKeyValueHeads = 1, RmsNormEps = 1e-6, HeadDim = 16,
            },
            NumHiddenLayers = layers,
            RopeBase = 1e6,
            MaxPositionIds = 512,
            SplitVocabSize = new Dictionary<string, int> { [Qwen3MoeParameters.DefaultSplitName] = 151_936 },
            SplitVocabOrder = new[] { Qwen3MoeParameters.DefaultSplitName },
        },
        TieWordEmbeddings = tiedEmbeddings,
    };

    /// <summary>Fine-tuning options for the tiny text model.</summary>
    public static Qwen3MoeEstimator.Options TextOptions(int maxSteps = 4) => new()
    {
        NewModel = TinyTextParameters(),
        TokenizerPath = TokenizerFolder,
        BatchSize = 3,
        MaxEpochs = 50,
        MaxSteps = maxSteps,
        LearningRate = 3e-3,
        WarmupRatio = 0,
        LogEveryNStep = 1,
        Seed = 3,
    };

    /// <summary>A random (untrained) tiny text model as a transformer, without a training run.</summary>
    public static Qwen3MoeTransformer RandomTextTransformer(MLContext context, Qwen3MoeScoringOptions? options = null, long seed = 7)
    {
        var model = StagedModel.Build(TinyTextParameters(), null, seed, new[] { CPU }, ScalarType.Float32);
        var (source, tokenizer) = s_tokenizer.Value;
        return new Qwen3MoeTransformer(context, model, source, tokenizer, options ?? new Qwen3MoeScoringOptions());
    }

    public static IDataView Texts(MLContext context, params string?[] texts) =>
        context.Data.LoadFromEnumerable(texts.Select(t => new TextRow { Text = t }).ToList());

    /// <summary>Every row of a float column.</summary>
    public static float[] Floats(IDataView data, string column) => data.GetColumn<float>(column).ToArray();

    /// <summary>Every row of a float vector column.</summary>
    public static float[][] Vectors(IDataView data, string column) => data.GetColumn<VBuffer<float>>(column).Select(v => v.DenseValues().ToArray()).ToArray();

    /// <summary>Collects the messages ML.NET's log sends from our components.</summary>
    public static List<string> CaptureLog(MLContext context)
    {
        var messages = new List<string>();
        context.Log += (_, e) =>
        {
            if (e.Source.Contains("Qwen3Moe", StringComparison.Ordinal))
                lock (messages) messages.Add(e.Message);
        };
        return messages;
    }
}
