using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Batching;

namespace Microsoft.ML.Qwen3Moe.Scoring;

/// <summary>
/// Cursor over a <see cref="ScoredDataView"/>. Input columns come from a cursor over the input; scores come from a
/// second, look-ahead cursor over the input column alone, which reads the next <see cref="ScoredDataView.BatchSize"/>
/// rows when the main cursor reaches a row not yet scored (IDataView cursors are repeatable, so both see the same rows).
/// </summary>
internal sealed class ScoringCursor : DataViewRowCursor
{
    private readonly ScoredDataView _parent;
    private readonly DataViewRowCursor _main;
    private readonly DataViewRowCursor? _lookahead;
    private readonly Func<RowInput>? _read;
    private readonly HashSet<int> _activeOutputs;
    private RowScore[] _scores = Array.Empty<RowScore>();
    private long _batchStart = -1;

    public ScoringCursor(ScoredDataView parent, DataViewRowCursor main, DataViewRowCursor? lookahead, HashSet<int> activeOutputs)
    {
        _parent = parent;
        _main = main;
        _lookahead = lookahead;
        _read = lookahead is null ? null : parent.Source.CreateReader(lookahead);
        _activeOutputs = activeOutputs;
    }

    /// <inheritdoc />
    public override DataViewSchema Schema => _parent.Schema;

    /// <inheritdoc />
    public override long Position => _main.Position;

    /// <inheritdoc />
    public override long Batch => _main.Batch;

    /// <inheritdoc />
    public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();

    /// <inheritdoc />
    public override bool IsColumnActive(DataViewSchema.Column column) =>
        column.Index < _parent.InputColumnCount
            ? _main.IsColumnActive(_parent.InputSchema[column.Index])
            : _activeOutputs.Contains(column.Index - _parent.InputColumnCount);

    /// <inheritdoc />
    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (column.Index < _parent.InputColumnCount) return _main.GetGetter<TValue>(_parent.InputSchema[column.Index]);
        int which = column.Index - _parent.InputColumnCount;
        if (!_activeOutputs.Contains(which)) throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
        return ScoreColumns.Getter<TValue>(which, Current);
    }

    /// <inheritdoc />
    public override bool MoveNext() => _main.MoveNext();

    private RowScore Current()
    {
        long p = _main.Position;
        if (p < 0) throw new InvalidOperationException("The cursor is not on a row (call MoveNext first).");
        if (p < _batchStart || p >= _batchStart + _scores.Length) ScoreBatchFrom(p);
        return _scores[p - _batchStart];
    }

    private void ScoreBatchFrom(long p)
    {
        var ahead = _lookahead!;
        while (ahead.Position < p - 1 && ahead.MoveNext())
        {
        }
        var inputs = new List<RowInput>(_parent.BatchSize);
        long first = -1;
        while (inputs.Count < _parent.BatchSize && ahead.MoveNext())
        {
            if (inputs.Count == 0) first = ahead.Position;
            inputs.Add(_read!());
        }
        if (first != p)
            throw new InvalidOperationException($"The input data view gave different rows to two cursors (row {p} not found again); scoring needs a " +
                $"repeatable IDataView.");
        _scores = _parent.Scorer.Score(InputColumn.Tokenize(inputs, _parent.Tokenizer, _parent.Scorer.MaxLength));
        _batchStart = p;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _main.Dispose();
            _lookahead?.Dispose();
        }
        base.Dispose(disposing);
    }
}
