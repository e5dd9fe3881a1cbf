namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>Which parameters a run updates; the others are frozen (no gradient, no optimizer state).</summary>
public enum TrainableParameters
{
    /// <summary>Every parameter.</summary>
    All,

    /// <summary>Only the vocabulary splits after the first (new tokens' embeddings and head rows).</summary>
    AddedVocabularyOnly,

    /// <summary>Everything except the routed experts (router, attention, norms, embeddings and head still train).</summary>
    AllButExperts,
}
