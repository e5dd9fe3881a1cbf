namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>The tokens one decode step produced, one entry per row of the batch.</summary>
/// <param name="Index">0 for the first new token.</param>
/// <param name="TokenIds">The new id of each row; -1 for a row that had already finished.</param>
/// <param name="Finished">For each row, the reason it finished at this step, or null (still running, or finished earlier).</param>
public sealed record GenerationStep(int Index, IReadOnlyList<int> TokenIds, IReadOnlyList<FinishReason?> Finished);
