namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>Which end of a sequence <see cref="TokenBatcher"/> cuts when it is longer than the maximum length.</summary>
public enum TruncationSide
{
    /// <summary>Keep the first tokens (Hugging Face's default).</summary>
    Right,

    /// <summary>Keep the last tokens (e.g. to keep the end of a long conversation).</summary>
    Left,
}
