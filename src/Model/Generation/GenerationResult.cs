namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>One sequence's generated tokens.</summary>
/// <param name="TokenIds">The new ids only (the end-of-sequence id included when it ended the sequence).</param>
/// <param name="FinishReason">Why it stopped.</param>
/// <param name="PromptTokenCount">Tokens of its prompt.</param>
public sealed record GenerationResult(IReadOnlyList<int> TokenIds, FinishReason FinishReason, int PromptTokenCount);
