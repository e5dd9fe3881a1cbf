using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Scoring;

namespace Microsoft.ML.Qwen3Moe.Evaluation;

/// <summary>
/// Reads a scored data view (the log-probabilities column, and the text column for bits per byte) into
/// <see cref="Qwen3MoeMetrics"/>, checking the columns with ML.NET's schema messages as its evaluators do.
/// </summary>
internal static class Qwen3MoeEvaluator
{
    private const string ParamName = "data";

    /// <exception cref="ArgumentOutOfRangeException">A column is missing or of the wrong type (ML.NET's messages).</exception>
    public static Qwen3MoeMetrics Evaluate(IDataView data, string logProbabilitiesColumnName, string? textColumnName)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentException.ThrowIfNullOrEmpty(logProbabilitiesColumnName);
        var schema = data.Schema;
        var logps = schema.GetColumnOrNull(logProbabilitiesColumnName) ?? throw SchemaErrors.NotFound("log-probabilities", logProbabilitiesColumnName,
            ParamName);
        if (logps.Type is not VectorDataViewType { ItemType: NumberDataViewType n } || n.RawType != typeof(float))
            throw SchemaErrors.Mismatch("log-probabilities", logProbabilitiesColumnName, "Vector<Single>", logps.Type.ToString() ?? "?", ParamName);
        DataViewSchema.Column? text = null;
        if (textColumnName is not null)
        {
            text = schema.GetColumnOrNull(textColumnName) ?? throw SchemaErrors.NotFound(InputColumn.TextRole, textColumnName, ParamName);
            if (text.Value.Type is not TextDataViewType)
                throw SchemaErrors.Mismatch(InputColumn.TextRole, textColumnName, TextDataViewType.Instance.ToString(), text.Value.Type.ToString() ?? "?",
                    ParamName);
        }

        var columns = text is null ? new[] { logps } : new[] { logps, text.Value };
        using var cursor = data.GetRowCursor(columns);
        var getLogps = cursor.GetGetter<VBuffer<float>>(logps);
        var getText = text is null ? null : cursor.GetGetter<ReadOnlyMemory<char>>(text.Value);
        VBuffer<float> values = default;
        ReadOnlyMemory<char> chars = default;
        long rows = 0, tokens = 0, bytes = 0;
        double nll = 0;
        while (cursor.MoveNext())
        {
            rows++;
            getLogps(ref values);
            if (values.Length == 0) continue;
            foreach (var v in values.DenseValues()) nll -= v;
            tokens += values.Length;
            if (getText is not null)
            {
                getText(ref chars);
                bytes += Encoding.UTF8.GetByteCount(chars.Span);
            }
        }
        return new Qwen3MoeMetrics(rows, tokens, nll, bytes);
    }
}
