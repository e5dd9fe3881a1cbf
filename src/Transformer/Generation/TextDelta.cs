using Microsoft.ML.Qwen3Moe.Generation;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>A piece of a streamed completion.</summary>
/// <param name="Text">New text (may be empty while a character or a possible stop sequence is incomplete).</param>
/// <param name="IsReasoning">Whether the text is inside the model's <c>&lt;think&gt;</c> block (the tags themselves are never returned).</param>
/// <param name="TokenId">The id that produced it, or -1 for the closing piece.</param>
/// <param name="FinishReason">Set on the closing piece only: why generation stopped.</param>
/// <param name="TokenCount">Set on the closing piece only: how many tokens were generated.</param>
public sealed record TextDelta(string Text, bool IsReasoning, int TokenId, FinishReason? FinishReason = null, int TokenCount = 0);
