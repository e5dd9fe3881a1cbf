namespace Microsoft.ML.Qwen3Moe;

/// <summary>What training does with a row whose text has more tokens than the maximum sequence length.</summary>
public enum LongTextHandling
{
    /// <summary>Keep the first <c>MaxSequenceLength</c> tokens (the default).</summary>
    Truncate,

    /// <summary>Leave the row out of training; the number of skipped rows is reported as a warning.</summary>
    Skip,
}
