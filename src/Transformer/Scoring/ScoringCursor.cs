using Microsoft.ML.Qwen3Moe.Batching;

namespace Microsoft.ML.Qwen3Moe.Scoring;

/// <summary>
/// Cursor over a <see cref="ScoredDataView"/>: input columns from the input's cursor, scores computed
/// <see cref="ScoredDataView.BatchSize"/> rows at a time from a look-ahead cursor over the input column.
/// </summary>
internal sealed class ScoringCursor : LookaheadCursor<RowInput, RowScore>
{
    private readonly ScoredDataView _parent;
    private readonly HashSet<int> _activeOutputs;

    public ScoringCursor(ScoredDataView parent, DataViewRowCursor main, DataViewRowCursor? lookahead, HashSet<int> activeOutputs)
        : base(main, lookahead, parent.Source.CreateReader, parent.BatchSize, "scoring")
    {
        _parent = parent;
        _activeOutputs = activeOutputs;
    }

    /// <inheritdoc />
    public override DataViewSchema Schema => _parent.Schema;

    /// <inheritdoc />
    public override bool IsColumnActive(DataViewSchema.Column column) =>
        column.Index < _parent.InputColumnCount
            ? Main.IsColumnActive(_parent.InputSchema[column.Index])
            : _activeOutputs.Contains(column.Index - _parent.InputColumnCount);

    /// <inheritdoc />
    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (column.Index < _parent.InputColumnCount) return Main.GetGetter<TValue>(_parent.InputSchema[column.Index]);
        int which = column.Index - _parent.InputColumnCount;
        if (!_activeOutputs.Contains(which)) throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
        return ScoreColumns.Getter<TValue>(which, Current);
    }

    /// <inheritdoc />
    protected override RowScore[] Compute(List<RowInput> inputs) =>
        _parent.Scorer.Score(InputColumn.Tokenize(inputs, _parent.Tokenizer, _parent.Scorer.MaxLength));
}
