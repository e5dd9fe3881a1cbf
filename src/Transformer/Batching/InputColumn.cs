using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Scoring;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe.Batching;

/// <summary>
/// The column a model reads: the text column (scalar <c>String</c>), or the token-ids column (vector of <c>Int32</c> or
/// <c>Int64</c>) when one is configured. Validates it with ML.NET's messages and turns rows into token ids.
/// </summary>
internal sealed class InputColumn
{
    public const string TextRole = "text";
    public const string TokenIdsRole = "token ids";
    public const string TokenIdsExpected = "Vector<Int32> or Vector<Int64>";

    private InputColumn(DataViewSchema.Column column, bool isTokenIds)
    {
        Column = column;
        IsTokenIds = isTokenIds;
    }

    /// <summary>The input column.</summary>
    public DataViewSchema.Column Column { get; }

    /// <summary>Whether the column holds token ids rather than text.</summary>
    public bool IsTokenIds { get; }

    /// <summary>Finds and checks the configured input column in <paramref name="schema"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The column is missing or of the wrong type (ML.NET's messages).</exception>
    public static InputColumn Resolve(DataViewSchema schema, Qwen3MoeScoringOptions options)
    {
        ArgumentNullException.ThrowIfNull(schema);
        bool ids = options.TokenIdsColumnName is not null;
        string name = options.TokenIdsColumnName ?? options.TextColumnName;
        string role = ids ? TokenIdsRole : TextRole;
        var column = schema.GetColumnOrNull(name) ?? throw SchemaErrors.NotFound(role, name);
        if (ids ? !IsTokenIdsType(column.Type) : column.Type is not TextDataViewType)
            throw SchemaErrors.Mismatch(role, name, ids ? TokenIdsExpected : TextDataViewType.Instance.ToString(), column.Type.ToString() ?? "?");
        return new InputColumn(column, ids);
    }

    /// <summary>The same check on a <see cref="SchemaShape"/> (estimator-level schema propagation).</summary>
    public static void Check(SchemaShape shape, Qwen3MoeScoringOptions options)
    {
        ArgumentNullException.ThrowIfNull(shape);
        bool ids = options.TokenIdsColumnName is not null;
        string name = options.TokenIdsColumnName ?? options.TextColumnName;
        string role = ids ? TokenIdsRole : TextRole;
        var column = shape.FirstOrDefault(c => c.Name == name);
        if (column.Name is null) throw SchemaErrors.NotFound(role, name);
        bool ok = ids
            ? column.Kind != SchemaShape.Column.VectorKind.Scalar && !column.IsKey
                && (column.ItemType == NumberDataViewType.Int32 || column.ItemType == NumberDataViewType.Int64)
            : column.Kind == SchemaShape.Column.VectorKind.Scalar && column.ItemType is TextDataViewType;
        if (!ok) throw SchemaErrors.Mismatch(role, name, ids ? TokenIdsExpected : TextDataViewType.Instance.ToString(), Describe(column));
    }

    private static string Describe(SchemaShape.Column c)
    {
        string item = c.IsKey ? $"Key<{c.ItemType}>" : c.ItemType?.ToString() ?? "?";
        return c.Kind == SchemaShape.Column.VectorKind.Scalar ? item : $"Vector<{item}>";
    }

    private static bool IsTokenIdsType(DataViewType type) =>
        type is VectorDataViewType v && (v.ItemType == NumberDataViewType.Int32 || v.ItemType == NumberDataViewType.Int64);

    /// <summary>A reader of the current row's raw input (text or ids) from <paramref name="row"/>, where the column is active.</summary>
    public Func<RowInput> CreateReader(DataViewRow row)
    {
        if (!IsTokenIds)
        {
            var getter = row.GetGetter<ReadOnlyMemory<char>>(Column);
            ReadOnlyMemory<char> text = default;
            return () =>
            {
                getter(ref text);
                return new RowInput(text.ToString(), null);
            };
        }
        if (((VectorDataViewType)Column.Type).ItemType == NumberDataViewType.Int32)
        {
            var getter = row.GetGetter<VBuffer<int>>(Column);
            VBuffer<int> buffer = default;
            return () =>
            {
                getter(ref buffer);
                return new RowInput(null, buffer.DenseValues().ToArray());
            };
        }
        var longGetter = row.GetGetter<VBuffer<long>>(Column);
        VBuffer<long> longs = default;
        return () =>
        {
            longGetter(ref longs);
            return new RowInput(null, longs.DenseValues().Select(v => checked((int)v)).ToArray());
        };
    }

    /// <summary>
    /// Token ids of each input: texts are encoded together (in parallel) with <paramref name="tokenizer"/>, each only up
    /// to <paramref name="maxTokens"/> ids (the rest of a long text is never encoded: scoring keeps that many anyway).
    /// </summary>
    /// <exception cref="InvalidOperationException">A text row but no tokenizer.</exception>
    public static int[][] Tokenize(IReadOnlyList<RowInput> inputs, Qwen3Tokenizer? tokenizer, int maxTokens)
    {
        var result = new int[inputs.Count][];
        var textIndices = new List<int>();
        for (int i = 0; i < inputs.Count; i++)
        {
            if (inputs[i].Ids is { } ids) result[i] = ids;
            else textIndices.Add(i);
        }
        if (textIndices.Count == 0) return result;
        if (tokenizer is null)
            throw new InvalidOperationException("The model has no tokenizer, so it cannot read text: set TokenIdsColumnName to a column of token ids, or " +
                "give a tokenizer folder.");
        var encoded = tokenizer.EncodeBatch(textIndices.Select(i => inputs[i].Text ?? string.Empty).ToList(), maxTokens: maxTokens);
        for (int k = 0; k < textIndices.Count; k++) result[textIndices[k]] = encoded[k];
        return result;
    }
}
