using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>
/// Turns token sequences into a model batch: truncated and right-padded by <see cref="TokenBatcher"/>, with the
/// attention mask, and labels shifted to the model's aligned convention (<c>labels[b,t]</c> is the token at t+1;
/// -100 on padding and at each row's last token). The tensors are created in the current dispose scope.
/// </summary>
internal sealed class CausalLMBatchBuilder
{
    private readonly TokenBatcher _batcher;

    /// <param name="padTokenId">Id written into padding positions (masked out, so any valid id).</param>
    /// <param name="maxLength">Rows are cut to their first <paramref name="maxLength"/> tokens.</param>
    /// <param name="padToMultipleOf">Batches are padded to a multiple of this many tokens (at most <paramref name="maxLength"/>).</param>
    public CausalLMBatchBuilder(int padTokenId, int maxLength, int padToMultipleOf = 1)
    {
        _batcher = new TokenBatcher(padTokenId, maxLength, TruncationSide.Right, padToMultipleOf);
    }

    /// <summary>Most tokens per row.</summary>
    public int MaxLength => _batcher.MaxLength!.Value;

    /// <inheritdoc cref="TokenBatcher.PaddedLength"/>
    public int PaddedLength(int longest) => _batcher.PaddedLength(longest);

    /// <summary>Builds the batch; also returns the number of real tokens of each row (after truncation).</summary>
    /// <param name="sequences">Token ids per row.</param>
    public (CausalLMBatch Batch, int[] Lengths) Build(IReadOnlyList<IReadOnlyList<int>> sequences)
    {
        var tokens = _batcher.Pad(sequences);
        int rows = tokens.BatchSize, columns = tokens.SequenceLength;
        var shifted = new long[tokens.Labels.Length];
        for (int r = 0; r < rows; r++)
        {
            int offset = r * columns;
            for (int t = 0; t < columns - 1; t++) shifted[offset + t] = tokens.Labels[offset + t + 1];
            shifted[offset + columns - 1] = CausalLMLoss.IgnoreIndex;
        }
        var batch = new CausalLMBatch
        {
            InputIds = tensor(tokens.InputIds, tokens.Shape),
            AttentionMask = tensor(tokens.AttentionMask, tokens.Shape), // keeps padding out of MoE statistics and the load-balancing loss
            RightPadded = true, // the batcher pads on the right: attention keeps the causal flash path
            Labels = tensor(shifted, tokens.Shape),
        };
        return (batch, tokens.Lengths);
    }
}
