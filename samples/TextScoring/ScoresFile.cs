using System.Text.Json;

namespace TextScoring;

/// <summary>Writes scored lines as JSON Lines: one object per line with text, token_count, mean_log_probability and perplexity.</summary>
internal static class ScoresFile
{
    /// <summary>Writes <paramref name="path"/> (to a temp file first, then renamed, so a failed run leaves no half file).</summary>
    public static void Write(string path, IReadOnlyList<string> lines, IReadOnlyList<int> tokens, IReadOnlyList<float> meanLogProbability,
        IReadOnlyList<float> perplexity)
    {
        var full = Path.GetFullPath(path);
        var temp = full + ".tmp";
        using (var stream = File.Create(temp))
        {
            for (int i = 0; i < lines.Count; i++)
            {
                using (var json = new Utf8JsonWriter(stream))
                {
                    json.WriteStartObject();
                    json.WriteString("text", lines[i]);
                    json.WriteNumber("token_count", tokens[i]);
                    WriteFinite(json, "mean_log_probability", meanLogProbability[i]);
                    WriteFinite(json, "perplexity", perplexity[i]);
                    json.WriteEndObject();
                }
                stream.WriteByte((byte)'\n');
            }
        }
        File.Move(temp, full, overwrite: true);
    }

    /// <summary>JSON has no NaN: a row with nothing to predict (fewer than 2 tokens) gets null.</summary>
    private static void WriteFinite(Utf8JsonWriter json, string name, float value)
    {
        if (float.IsFinite(value)) json.WriteNumber(name, value);
        else json.WriteNull(name);
    }
}
