namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// The lazy result of <see cref="Qwen3MoeGenerationTransformer.Transform"/>: the input's columns plus the completion.
/// A cursor generates the next batch of prompts (read through a second, look-ahead cursor) when it reaches a row not yet
/// generated; it always hands out a single cursor.
/// </summary>
internal sealed class GeneratedDataView : IDataView
{
    private readonly IDataView _input;

    public GeneratedDataView(IDataView input, DataViewSchema.Column prompt, DataViewSchema schema, Qwen3MoeGenerationTransformer owner)
    {
        _input = input;
        Prompt = prompt;
        Schema = schema;
        Owner = owner;
    }

    public DataViewSchema.Column Prompt { get; }

    public Qwen3MoeGenerationTransformer Owner { get; }

    public IDataView Input => _input;

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
        int inputCount = _input.Schema.Count;
        bool completion = needed.Any(c => c.Index >= inputCount);
        var main = _input.GetRowCursor(needed.Where(c => c.Index < inputCount).Select(c => _input.Schema[c.Index]));
        var lookahead = completion ? _input.GetRowCursor(new[] { Prompt }) : null;
        return new GenerationCursor(this, main, lookahead);
    }

    /// <inheritdoc />
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        new[] { GetRowCursor(columnsNeeded, rand) };
}
