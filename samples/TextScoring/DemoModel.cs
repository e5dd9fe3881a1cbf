using Microsoft.ML.Qwen3Moe.Configuration;

namespace TextScoring;

/// <summary>The embedded default: a small random Qwen3-MoE whose vocabulary fits the real Qwen3 tokenizer.</summary>
internal static class DemoModel
{
    public static string TokenizerFolder => Path.Combine(AppContext.BaseDirectory, "tokenizer");

    public static string DataFile(string name) => Path.Combine(AppContext.BaseDirectory, "data", name);

    /// <summary>2 layers, width 32, 4 experts (top-2), vocabulary 151,936 (Qwen3's), tied embeddings: about 5 M parameters.</summary>
    public static Qwen3MoeForCausalLMParameters Parameters { get; } = new()
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
}
