using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace TextScoring;

/// <summary>Scores lines with a model and prints them as a perplexity table.</summary>
internal static class ScoreTable
{
    private sealed class Line
    {
        public string Text { get; set; } = "";
    }

    /// <summary>Per line: perplexity, the per-token log-probabilities, token count and mean log-probability.</summary>
    public static (float[] Perplexity, float[][] LogProbabilities, int[] Tokens, float[] MeanLogProbability) Score(MLContext context, ITransformer model,
        IReadOnlyList<string> lines)
    {
        var data = context.Data.LoadFromEnumerable(lines.Select(l => new Line { Text = l }).ToList());
        var scored = model.Transform(data);
        return (scored.GetColumn<float>("Perplexity").ToArray(),
            scored.GetColumn<float[]>("LogProbabilities").ToArray(),
            scored.GetColumn<int>("TokenCount").ToArray(),
            scored.GetColumn<float>("MeanLogProbability").ToArray());
    }

    /// <summary>Perplexities as table cells.</summary>
    public static string[] Cells(float[] values) => values.Select(v => v.ToString("N1", CultureInfo.InvariantCulture)).ToArray();

    /// <summary>Prints one row per line with one column per model (or per measure).</summary>
    public static void Print(IReadOnlyList<string> lines, params (string Header, string[] Cells)[] columns)
    {
        const int textWidth = 52;
        Console.WriteLine($"  {"line",-textWidth} {string.Join(" ", columns.Select(c => c.Header.PadLeft(12)))}");
        for (int i = 0; i < lines.Count; i++)
        {
            var text = lines[i].Length > textWidth ? lines[i][..(textWidth - 1)] + "…" : lines[i];
            var values = columns.Select(c => c.Cells[i].PadLeft(12));
            Console.WriteLine($"  {text,-textWidth} {string.Join(" ", values)}");
        }
    }
}
