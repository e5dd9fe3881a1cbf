using Microsoft.ML.Qwen3Moe.Kernels;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>
/// Turns packed rows (each several documents, from <see cref="SequencePacker"/>) into a model batch: the documents of a
/// row concatenated and the rows padded by <see cref="CausalLMBatchBuilder"/> (so they get its padding and attention
/// mask), plus <see cref="CausalLMBatch.DocumentIds"/> (0, 1, ... per document of a row; the padding an id of its own),
/// from which the model confines attention to each document and restarts positions, and labels
/// <see cref="CausalLMLoss.IgnoreIndex"/> at each document's last token, so no token predicts the next document. The
/// loss therefore covers exactly the tokens it covers with one document per row. A batch whose rows each hold a single
/// document is the plain causal batch (no document ids), so attention keeps its unmasked fast path.
/// </summary>
internal sealed class PackedBatchBuilder
{
    private readonly CausalLMBatchBuilder _rows;

    /// <param name="rows">Pads the concatenated rows (its maximum length bounds every packed row).</param>
    public PackedBatchBuilder(CausalLMBatchBuilder rows)
    {
        _rows = rows;
    }

    /// <summary>Builds the batch of <paramref name="packs"/> (per row, its documents' token ids) in the current dispose scope.</summary>
    /// <exception cref="ArgumentException">A row holds more than the maximum length, or an empty document.</exception>
    public CausalLMBatch Build(IReadOnlyList<IReadOnlyList<IReadOnlyList<int>>> packs)
    {
        for (int r = 0; r < packs.Count; r++)
        {
            long tokens = packs[r].Sum(d => (long)d.Count);
            if (tokens > _rows.MaxLength || packs[r].Any(d => d.Count == 0))
                throw new ArgumentException($"Packed row {r} holds {tokens} tokens in {packs[r].Count} documents; a row holds non-empty documents of " +
                    $"at most {_rows.MaxLength} tokens in all.", nameof(packs));
        }
        var (batch, _) = _rows.Build(packs.Select(p => (IReadOnlyList<int>)p.SelectMany(d => d).ToArray()).ToList());
        // one document per row: the plain causal batch already confines it (and keeps attention on the flash kernel)
        if (packs.All(p => p.Count == 1)) return batch;
        long columns = batch.InputIds!.shape[1];
        var documents = new long[packs.Count * columns];
        var lastTokens = new bool[documents.Length];
        for (int r = 0; r < packs.Count; r++)
        {
            long at = r * columns, end = at + columns;
            long id = 0;
            foreach (var document in packs[r])
            {
                Array.Fill(documents, id++, (int)at, document.Count);
                at += document.Count;
                lastTokens[at - 1] = true;
            }
            Array.Fill(documents, id, (int)at, (int)(end - at)); // the padding: a document of its own
        }
        var shape = new[] { (long)packs.Count, columns };
        batch.Labels!.masked_fill_(tensor(lastTokens, shape), Scalars.IgnoreIndex);
        return batch with { DocumentIds = tensor(documents, shape) };
    }
}
