using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// The training column read once and tokenized (texts in parallel, in chunks): the sequences to train on, and what was
/// left out or cut. Rows with no text (null or empty) or a single token (nothing to predict) are skipped; rows longer
/// than the maximum length are truncated or skipped as the options say.
/// </summary>
internal sealed class TrainingCorpus
{
    private const int ChunkRows = 1024;

    private TrainingCorpus(List<int[]> sequences)
    {
        Sequences = sequences;
    }

    /// <summary>Token ids of the rows kept, in input order.</summary>
    public IReadOnlyList<int[]> Sequences { get; }

    /// <summary>Rows read.</summary>
    public long Rows { get; private set; }

    /// <summary>Rows with null or empty text (or no ids), skipped.</summary>
    public long EmptyRows { get; private set; }

    /// <summary>Rows of a single token, skipped (no next token to learn).</summary>
    public long SingleTokenRows { get; private set; }

    /// <summary>Rows longer than the maximum length that were truncated.</summary>
    public long TruncatedRows { get; private set; }

    /// <summary>Rows longer than the maximum length that were skipped.</summary>
    public long LongRowsSkipped { get; private set; }

    /// <summary>Tokens kept.</summary>
    public long Tokens { get; private set; }

    /// <summary>Reads <paramref name="column"/> of <paramref name="data"/>.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellation"/> asked to stop (checked before each row is read).</exception>
    public static TrainingCorpus Read(IDataView data, InputColumn column, Qwen3Tokenizer? tokenizer, int maxLength, LongTextHandling longText,
        TrainingCancellation? cancellation = null)
    {
        var corpus = new TrainingCorpus(new List<int[]>());
        using var cursor = data.GetRowCursor(new[] { column.Column });
        var read = column.CreateReader(cursor);
        var chunk = new List<RowInput>(ChunkRows);
        while (true)
        {
            cancellation?.ThrowIfCanceled("while reading the data");
            bool more = cursor.MoveNext();
            if (more) chunk.Add(read());
            if (chunk.Count == ChunkRows || (!more && chunk.Count > 0))
            {
                corpus.Add(InputColumn.Tokenize(chunk, tokenizer, int.MaxValue), maxLength, longText);
                chunk.Clear();
            }
            if (!more) return corpus;
        }
    }

    private void Add(int[][] rows, int maxLength, LongTextHandling longText)
    {
        var kept = (List<int[]>)Sequences;
        foreach (var ids in rows)
        {
            Rows++;
            var row = ids;
            if (row.Length == 0)
            {
                EmptyRows++;
                continue;
            }
            if (row.Length > maxLength)
            {
                if (longText == LongTextHandling.Skip)
                {
                    LongRowsSkipped++;
                    continue;
                }
                row = row[..maxLength];
                TruncatedRows++;
            }
            if (row.Length < 2)
            {
                SingleTokenRows++;
                continue;
            }
            kept.Add(row);
            Tokens += row.Length;
        }
    }

    /// <summary>One warning line per kind of row left out or cut; empty when every row was used as is.</summary>
    public IEnumerable<string> Warnings(int maxLength)
    {
        if (EmptyRows > 0) yield return $"{EmptyRows} of {Rows} training row(s) have no text (null or empty) and were skipped.";
        if (SingleTokenRows > 0) yield return $"{SingleTokenRows} of {Rows} training row(s) have a single token (nothing to predict) and were skipped.";
        if (TruncatedRows > 0) yield return
            $"{TruncatedRows} of {Rows} training row(s) have more than {maxLength} tokens and were truncated (MaxSequenceLength).";
        if (LongRowsSkipped > 0) yield return
            $"{LongRowsSkipped} of {Rows} training row(s) have more than {maxLength} tokens and were skipped (LongTextHandling = Skip).";
    }
}
