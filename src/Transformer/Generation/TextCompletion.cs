using Microsoft.ML.Qwen3Moe.Generation;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>One generated completion.</summary>
/// <param name="Text">The new text (special tokens such as <c>&lt;|im_end|&gt;</c> left out; cut before a stop sequence).</param>
/// <param name="TokenIds">The new ids (an ending EOS id included).</param>
/// <param name="FinishReason">Why it stopped (<see cref="FinishReason.Stop"/> for a stop sequence).</param>
/// <param name="PromptTokenCount">Tokens of the prompt.</param>
public sealed record TextCompletion(string Text, IReadOnlyList<int> TokenIds, FinishReason FinishReason, int PromptTokenCount);
