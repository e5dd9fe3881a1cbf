namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>
/// A padded batch of token sequences as flat row-major arrays of shape [<see cref="BatchSize"/>,
/// <see cref="SequenceLength"/>], ready to become int64 tensors (e.g. <c>torch.tensor(batch.InputIds, batch.Shape)</c>).
/// Padding is on the right.
/// </summary>
public sealed class TokenBatch
{
    internal TokenBatch(int batchSize, int sequenceLength, long[] inputIds, long[] attentionMask, long[] labels, int[] lengths)
    {
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        InputIds = inputIds;
        AttentionMask = attentionMask;
        Labels = labels;
        Lengths = lengths;
    }

    /// <summary>Number of sequences (rows).</summary>
    public int BatchSize { get; }

    /// <summary>Length of every row after padding (columns).</summary>
    public int SequenceLength { get; }

    /// <summary>[<see cref="BatchSize"/>, <see cref="SequenceLength"/>], for tensor constructors.</summary>
    public long[] Shape => [BatchSize, SequenceLength];

    /// <summary>Token ids; padding positions hold the pad token id.</summary>
    public long[] InputIds { get; }

    /// <summary>1 for real tokens, 0 for padding.</summary>
    public long[] AttentionMask { get; }

    /// <summary>
    /// The token ids, not shifted (the model shifts, as Hugging Face's causal LMs do), with <see cref="CausalLMLoss.IgnoreIndex"/>
    /// on padding and on prompt tokens excluded from the loss.
    /// </summary>
    public long[] Labels { get; }

    /// <summary>Number of real (non-padding) tokens in each row.</summary>
    public int[] Lengths { get; }

    /// <summary>The flat index of row <paramref name="row"/>, position <paramref name="position"/>.</summary>
    public int IndexOf(int row, int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, BatchSize);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(position, SequenceLength);
        return (row * SequenceLength) + position;
    }
}
