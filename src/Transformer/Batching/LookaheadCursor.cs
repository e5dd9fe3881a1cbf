using Microsoft.ML.Data;

namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>
/// A cursor that appends computed columns to its input's rows, computing them a batch at a time. Input columns come from a
/// main cursor over the input; the computed values come from a second, look-ahead cursor over the input, which reads the
/// next <c>batchSize</c> rows when the main cursor reaches a row not yet computed (IDataView cursors are repeatable, so
/// both see the same rows). Without a look-ahead cursor no computed column is active.
/// </summary>
/// <typeparam name="TInput">What is read from a row of the look-ahead cursor.</typeparam>
/// <typeparam name="TResult">What is computed for a row.</typeparam>
internal abstract class LookaheadCursor<TInput, TResult> : DataViewRowCursor
{
    private readonly DataViewRowCursor? _lookahead;
    private readonly Func<TInput>? _read;
    private readonly int _batchSize;
    private readonly string _task;
    private TResult[] _results = Array.Empty<TResult>();
    private long _batchStart = -1;

    /// <param name="main">The cursor over the input whose rows this cursor walks.</param>
    /// <param name="lookahead">A second cursor over the input, or null when no computed column is active.</param>
    /// <param name="reader">Makes the function that reads the look-ahead cursor's current row.</param>
    /// <param name="batchSize">Rows computed together.</param>
    /// <param name="task">What is computed ("scoring", "generation"), for messages.</param>
    protected LookaheadCursor(DataViewRowCursor main, DataViewRowCursor? lookahead, Func<DataViewRowCursor, Func<TInput>> reader, int batchSize,
        string task)
    {
        Main = main;
        _lookahead = lookahead;
        _read = lookahead is null ? null : reader(lookahead);
        _batchSize = batchSize;
        _task = task;
    }

    /// <summary>The cursor over the input whose rows this cursor walks.</summary>
    protected DataViewRowCursor Main { get; }

    /// <summary>Whether the computed columns can be read (a look-ahead cursor was given).</summary>
    protected bool Computes => _lookahead is not null;

    /// <inheritdoc />
    public override long Position => Main.Position;

    /// <inheritdoc />
    public override long Batch => Main.Batch;

    /// <inheritdoc />
    public override ValueGetter<DataViewRowId> GetIdGetter() => Main.GetIdGetter();

    /// <inheritdoc />
    public override bool MoveNext() => Main.MoveNext();

    /// <summary>Computes the results of a batch of rows, one per input, in order.</summary>
    protected abstract TResult[] Compute(List<TInput> inputs);

    /// <summary>The result of the main cursor's current row, computing its batch first when needed.</summary>
    protected TResult Current()
    {
        long p = Main.Position;
        if (p < 0) throw new InvalidOperationException("The cursor is not on a row (call MoveNext first).");
        if (p < _batchStart || p >= _batchStart + _results.Length) ComputeBatchFrom(p);
        return _results[p - _batchStart];
    }

    private void ComputeBatchFrom(long p)
    {
        var ahead = _lookahead ?? throw new InvalidOperationException("No computed column is active in this cursor.");
        while (ahead.Position < p - 1 && ahead.MoveNext())
        {
        }
        var inputs = new List<TInput>(_batchSize);
        long first = -1;
        while (inputs.Count < _batchSize && ahead.MoveNext())
        {
            if (inputs.Count == 0) first = ahead.Position;
            inputs.Add(_read!());
        }
        if (first != p)
            throw new InvalidOperationException($"The input data view gave different rows to two cursors (row {p} not found again); {_task} needs a " +
                "repeatable IDataView.");
        _results = Compute(inputs);
        _batchStart = p;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Main.Dispose();
            _lookahead?.Dispose();
        }
        base.Dispose(disposing);
    }
}
