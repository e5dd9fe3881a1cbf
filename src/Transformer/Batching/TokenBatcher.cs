namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>
/// Truncates and right-pads token sequences into a <see cref="TokenBatch"/> (input ids, attention mask, labels with
/// <see cref="CausalLMLoss.IgnoreIndex"/> on padding), for scoring and training. Plain arrays, no tensors.
/// </summary>
public sealed class TokenBatcher
{
    /// <summary>Creates a batcher.</summary>
    /// <param name="padTokenId">The id put in padding positions (<see cref="Tokenization.Qwen3Tokenizer.PadTokenId"/>).</param>
    /// <param name="maxLength">Longer sequences are truncated to this many tokens; null for no limit.</param>
    /// <param name="truncation">Which end to cut.</param>
    /// <param name="padToMultipleOf">
    /// Round the padded length up to a multiple of this (e.g. 8 for tensor cores, 128 for a few length buckets), but never beyond
    /// <paramref name="maxLength"/>.
    /// </param>
    public TokenBatcher(int padTokenId, int? maxLength = null, TruncationSide truncation = TruncationSide.Right, int padToMultipleOf = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(padTokenId);
        if (maxLength is { } max)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(max, nameof(maxLength));
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(padToMultipleOf);
        if (!Enum.IsDefined(truncation))
        {
            throw new ArgumentOutOfRangeException(nameof(truncation), truncation, "Unknown truncation side.");
        }

        PadTokenId = padTokenId;
        MaxLength = maxLength;
        Truncation = truncation;
        PadToMultipleOf = padToMultipleOf;
    }

    /// <summary>The id put in padding positions.</summary>
    public int PadTokenId { get; }

    /// <summary>The most tokens kept per sequence, or null for no limit.</summary>
    public int? MaxLength { get; }

    /// <summary>Which end is cut when a sequence is too long.</summary>
    public TruncationSide Truncation { get; }

    /// <summary>The padded length is a multiple of this, or <see cref="MaxLength"/> when rounding up would pass it.</summary>
    public int PadToMultipleOf { get; }

    /// <summary>
    /// The padded length of a batch whose longest kept sequence has <paramref name="longest"/> tokens: rounded up to a
    /// multiple of <see cref="PadToMultipleOf"/>, at most <see cref="MaxLength"/>.
    /// </summary>
    public int PaddedLength(int longest) =>
        (int)Math.Min((longest + (long)PadToMultipleOf - 1) / PadToMultipleOf * PadToMultipleOf, MaxLength ?? int.MaxValue);

    /// <summary>Truncates and pads sequences into one batch, padded to the longest (kept) sequence.</summary>
    /// <param name="sequences">Token ids per row, e.g. from <see cref="Tokenization.Qwen3Tokenizer.EncodeBatch(IReadOnlyList{string}, int, int)"/>.</param>
    /// <param name="promptLengths">
    /// Optional, per row: how many leading tokens of the (untruncated) sequence are prompt, labelled
    /// <see cref="CausalLMLoss.IgnoreIndex"/> so that only the answer counts in the loss.
    /// </param>
    /// <exception cref="ArgumentException">No sequences, a null row, or <paramref name="promptLengths"/> of the wrong count or out of range.</exception>
    public TokenBatch Pad(IReadOnlyList<IReadOnlyList<int>> sequences, IReadOnlyList<int>? promptLengths = null)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count == 0)
        {
            throw new ArgumentException("A batch needs at least one sequence.", nameof(sequences));
        }

        if (promptLengths is not null && promptLengths.Count != sequences.Count)
        {
            throw new ArgumentException($"promptLengths has {promptLengths.Count} entries for {sequences.Count} sequences.", nameof(promptLengths));
        }

        int rows = sequences.Count;
        var keptFrom = new int[rows];
        var lengths = new int[rows];
        int longest = 0;
        for (int r = 0; r < rows; r++)
        {
            IReadOnlyList<int> sequence = sequences[r] ?? throw new ArgumentException($"sequences[{r}] is null.", nameof(sequences));
            int prompt = promptLengths?[r] ?? 0;
            if (prompt < 0 || prompt > sequence.Count)
            {
                throw new ArgumentException($"promptLengths[{r}] is {prompt}, outside 0..{sequence.Count}.", nameof(promptLengths));
            }

            lengths[r] = Math.Min(sequence.Count, MaxLength ?? int.MaxValue);
            keptFrom[r] = Truncation == TruncationSide.Left ? sequence.Count - lengths[r] : 0;
            longest = Math.Max(longest, lengths[r]);
        }

        int columns = PaddedLength(longest);
        var inputIds = new long[checked(rows * columns)];
        var mask = new long[inputIds.Length];
        var labels = new long[inputIds.Length];
        Array.Fill(inputIds, PadTokenId);
        Array.Fill(labels, CausalLMLoss.IgnoreIndex);
        for (int r = 0; r < rows; r++)
        {
            IReadOnlyList<int> sequence = sequences[r];
            int prompt = promptLengths?[r] ?? 0;
            for (int j = 0; j < lengths[r]; j++)
            {
                int source = keptFrom[r] + j;
                int target = (r * columns) + j;
                inputIds[target] = sequence[source];
                mask[target] = 1;
                labels[target] = source < prompt ? CausalLMLoss.IgnoreIndex : sequence[source];
            }
        }

        return new TokenBatch(rows, columns, inputIds, mask, labels, lengths);
    }
}
