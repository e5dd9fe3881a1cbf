namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>Why a sequence stopped growing.</summary>
public enum FinishReason
{
    /// <summary>It produced one of the end-of-sequence ids (the id is the last generated token).</summary>
    EndOfSequence,

    /// <summary>It reached <see cref="GenerationOptions.MaxNewTokens"/>.</summary>
    Length,

    /// <summary>The caller's stop condition (for example a stop string) ended it.</summary>
    Stop,
}
