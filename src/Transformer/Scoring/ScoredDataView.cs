using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe.Scoring;

/// <summary>
/// The lazy result of <see cref="Qwen3MoeTransformer.Transform"/>: the input's columns plus the score columns. Rows are
/// scored in batches as a cursor reaches them; it always hands out a single cursor (never parallel ones), so forwards
/// are never concurrent.
/// </summary>
internal sealed class ScoredDataView : IDataView
{
    private readonly IDataView _input;

    public ScoredDataView(IDataView input, InputColumn source, ScoreColumns columns, BatchScorer scorer, Qwen3Tokenizer? tokenizer, int batchSize)
    {
        _input = input;
        Source = source;
        Scorer = scorer;
        Tokenizer = tokenizer;
        BatchSize = batchSize;
        Schema = columns.OutputSchema(input.Schema);
    }

    public InputColumn Source { get; }

    public BatchScorer Scorer { get; }

    public Qwen3Tokenizer? Tokenizer { get; }

    public int BatchSize { get; }

    /// <summary>Number of input columns; columns at or after this index are scores.</summary>
    public int InputColumnCount => _input.Schema.Count;

    public DataViewSchema InputSchema => _input.Schema;

    /// <inheritdoc />
    public bool CanShuffle => false;

    /// <inheritdoc />
    public DataViewSchema Schema { get; }

    /// <inheritdoc />
    public long? GetRowCount() => _input.GetRowCount();

    /// <inheritdoc />
    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.ToList();
        var outputs = needed.Where(c => c.Index >= InputColumnCount).Select(c => c.Index - InputColumnCount).ToHashSet();
        var main = _input.GetRowCursor(needed.Where(c => c.Index < InputColumnCount).Select(c => _input.Schema[c.Index]));
        DataViewRowCursor? lookahead = null;
        if (outputs.Count > 0)
        {
            lookahead = _input.GetRowCursor(new[] { Source.Column });
            Scorer.BeginPass();
        }
        return new ScoringCursor(this, main, lookahead, outputs);
    }

    /// <inheritdoc />
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        new[] { GetRowCursor(columnsNeeded, rand) };
}
