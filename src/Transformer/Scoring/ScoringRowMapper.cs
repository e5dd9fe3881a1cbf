using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe.Scoring;

/// <summary>
/// Row-at-a-time scoring for <c>PredictionEngine</c> and chained mappers: each output row scores its input row on first
/// use (one forward for all four outputs) and keeps the result while the input stays the same.
/// </summary>
internal sealed class ScoringRowMapper : IRowToRowMapper
{
    private readonly InputColumn _source;
    private readonly BatchScorer _scorer;
    private readonly Qwen3Tokenizer? _tokenizer;

    public ScoringRowMapper(DataViewSchema inputSchema, InputColumn source, ScoreColumns columns, BatchScorer scorer, Qwen3Tokenizer? tokenizer)
    {
        InputSchema = inputSchema;
        OutputSchema = columns.OutputSchema(inputSchema);
        _source = source;
        _scorer = scorer;
        _tokenizer = tokenizer;
    }

    /// <inheritdoc />
    public DataViewSchema InputSchema { get; }

    /// <inheritdoc />
    public DataViewSchema OutputSchema { get; }

    /// <inheritdoc />
    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var list = dependingColumns.ToList();
        var inputs = list.Where(c => c.Index < InputSchema.Count).Select(c => InputSchema[c.Index]).ToList();
        if (list.Any(c => c.Index >= InputSchema.Count) && inputs.All(c => c.Index != _source.Column.Index)) inputs.Add(_source.Column);
        return inputs;
    }

    /// <inheritdoc />
    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        var active = activeColumns.Where(c => c.Index >= InputSchema.Count).Select(c => c.Index - InputSchema.Count).ToHashSet();
        return new ScoredRow(this, input, active);
    }

    /// <summary>A row of the mapper's output over one input row.</summary>
    private sealed class ScoredRow : DataViewRow
    {
        private readonly ScoringRowMapper _parent;
        private readonly DataViewRow _input;
        private readonly HashSet<int> _active;
        private readonly Func<RowInput>? _read;
        private RowInput _cachedInput;
        private RowScore? _cached;

        public ScoredRow(ScoringRowMapper parent, DataViewRow input, HashSet<int> active)
        {
            _parent = parent;
            _input = input;
            _active = active;
            _read = active.Count > 0 ? parent._source.CreateReader(input) : null;
        }

        public override DataViewSchema Schema => _parent.OutputSchema;

        public override long Position => _input.Position;

        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index < _parent.InputSchema.Count ? _input.IsColumnActive(_parent.InputSchema[column.Index])
                : _active.Contains(column.Index - _parent.InputSchema.Count);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int inputs = _parent.InputSchema.Count;
            if (column.Index < inputs) return _input.GetGetter<TValue>(_parent.InputSchema[column.Index]);
            if (!_active.Contains(column.Index - inputs)) throw new InvalidOperationException($"Column '{column.Name}' is not active in this row.");
            return ScoreColumns.Getter<TValue>(column.Index - inputs, Current);
        }

        private RowScore Current()
        {
            var raw = _read!();
            if (_cached is null || !SameInput(raw, _cachedInput))
            {
                _cached = _parent._scorer.Score(InputColumn.Tokenize(new[] { raw }, _parent._tokenizer, _parent._scorer.MaxLength))[0];
                _cachedInput = raw;
            }
            return _cached;
        }

        private static bool SameInput(RowInput a, RowInput b) =>
            a.Ids is null ? b.Ids is null && string.Equals(a.Text, b.Text, StringComparison.Ordinal) : b.Ids is not null && a.Ids.AsSpan().SequenceEqual(b.Ids);
    }
}
