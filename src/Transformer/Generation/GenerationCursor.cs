using Microsoft.ML.Data;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>Cursor over a <see cref="GeneratedDataView"/>: input columns from the input's cursor, completions generated a batch at a time.</summary>
internal sealed class GenerationCursor : DataViewRowCursor
{
    private readonly GeneratedDataView _parent;
    private readonly DataViewRowCursor _main;
    private readonly DataViewRowCursor? _lookahead;
    private readonly ValueGetter<ReadOnlyMemory<char>>? _readPrompt;
    private string[] _completions = Array.Empty<string>();
    private long _batchStart = -1;

    public GenerationCursor(GeneratedDataView parent, DataViewRowCursor main, DataViewRowCursor? lookahead)
    {
        _parent = parent;
        _main = main;
        _lookahead = lookahead;
        _readPrompt = lookahead?.GetGetter<ReadOnlyMemory<char>>(parent.Prompt);
    }

    private int InputCount => _parent.Input.Schema.Count;

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
        column.Index < InputCount ? _main.IsColumnActive(_parent.Input.Schema[column.Index]) : _lookahead is not null;

    /// <inheritdoc />
    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (column.Index < InputCount) return _main.GetGetter<TValue>(_parent.Input.Schema[column.Index]);
        if (_lookahead is null) throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
        ValueGetter<ReadOnlyMemory<char>> getter = (ref ReadOnlyMemory<char> dst) => dst = Current().AsMemory();
        return getter as ValueGetter<TValue>
            ?? throw new InvalidOperationException($"Invalid TValue in GetGetter: '{typeof(TValue)}', expected type: '{typeof(ReadOnlyMemory<char>)}'.");
    }

    /// <inheritdoc />
    public override bool MoveNext() => _main.MoveNext();

    private string Current()
    {
        long p = _main.Position;
        if (p < 0) throw new InvalidOperationException("The cursor is not on a row (call MoveNext first).");
        if (p < _batchStart || p >= _batchStart + _completions.Length) GenerateFrom(p);
        return _completions[p - _batchStart];
    }

    private void GenerateFrom(long p)
    {
        var ahead = _lookahead!;
        while (ahead.Position < p - 1 && ahead.MoveNext())
        {
        }
        var prompts = new List<string>(_parent.Owner.BatchSize);
        long first = -1;
        var value = default(ReadOnlyMemory<char>);
        while (prompts.Count < _parent.Owner.BatchSize && ahead.MoveNext())
        {
            if (prompts.Count == 0) first = ahead.Position;
            _readPrompt!(ref value);
            if (value.IsEmpty)
            {
                throw new InvalidOperationException(
                    $"Row {ahead.Position}: the prompt column '{_parent.Prompt.Name}' is empty; a prompt needs at least one token.");
            }
            prompts.Add(value.ToString());
        }
        if (first != p)
        {
            throw new InvalidOperationException(
                $"The input data view gave different rows to two cursors (row {p} not found again); generation needs a repeatable IDataView.");
        }
        _completions = _parent.Owner.Complete(prompts);
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
