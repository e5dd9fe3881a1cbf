namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>One row's raw input: text, or token ids.</summary>
/// <param name="Text">The text, when the input is a text column.</param>
/// <param name="Ids">The token ids, when the input is a token-ids column.</param>
internal readonly record struct RowInput(string? Text, int[]? Ids);
