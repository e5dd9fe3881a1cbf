using Microsoft.ML.Qwen3Moe.Batching;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>Cursor over a <see cref="GeneratedDataView"/>: input columns from the input's cursor, completions generated a batch at a time.</summary>
internal sealed class GenerationCursor : LookaheadCursor<string, string>
{
    private readonly GeneratedDataView _parent;

    public GenerationCursor(GeneratedDataView parent, DataViewRowCursor main, DataViewRowCursor? lookahead)
        : base(main, lookahead, ahead => PromptReader(parent, ahead), parent.Owner.BatchSize, "generation")
    {
        _parent = parent;
    }

    private int InputCount => _parent.Input.Schema.Count;

    /// <inheritdoc />
    public override DataViewSchema Schema => _parent.Schema;

    /// <inheritdoc />
    public override bool IsColumnActive(DataViewSchema.Column column) =>
        column.Index < InputCount ? Main.IsColumnActive(_parent.Input.Schema[column.Index]) : Computes;

    /// <inheritdoc />
    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (column.Index < InputCount) return Main.GetGetter<TValue>(_parent.Input.Schema[column.Index]);
        if (!Computes) throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
        ValueGetter<ReadOnlyMemory<char>> getter = (ref ReadOnlyMemory<char> dst) => dst = Current().AsMemory();
        return getter as ValueGetter<TValue>
            ?? throw new InvalidOperationException($"Invalid TValue in GetGetter: '{typeof(TValue)}', expected type: '{typeof(ReadOnlyMemory<char>)}'.");
    }

    /// <inheritdoc />
    protected override string[] Compute(List<string> inputs) => _parent.Owner.Complete(inputs);

    private static Func<string> PromptReader(GeneratedDataView parent, DataViewRowCursor ahead)
    {
        var read = ahead.GetGetter<ReadOnlyMemory<char>>(parent.Prompt);
        return () =>
        {
            var value = default(ReadOnlyMemory<char>);
            read(ref value);
            if (value.IsEmpty)
                throw new InvalidOperationException(
                    $"Row {ahead.Position}: the prompt column '{parent.Prompt.Name}' is empty; a prompt needs at least one token.");
            return value.ToString();
        };
    }
}
