using System.Text.Json;
using System.Text.Unicode;

namespace Microsoft.ML.Qwen3Moe.Safetensors;

/// <summary>Parsing JSON that comes from a downloaded file: UTF-8 checked first, depth bounded, repeated properties refused.</summary>
/// <remarks>
/// <see cref="JsonDocument"/> accepts repeated property names and lookups then silently pick one of them, so
/// two readers could disagree about which tensor a name means; <see cref="UniqueProperties"/> refuses them instead.
/// </remarks>
internal static class UntrustedJson
{
    /// <summary>Builds the exception for a problem, optionally wrapping the parser's exception.</summary>
    public delegate InvalidDataException Invalid(string problem, Exception? inner = null);

    /// <summary>Parses <paramref name="utf8"/>; <paramref name="what"/> names the text in messages ("the header").</summary>
    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, int maxDepth, string what, Invalid invalid)
    {
        if (!Utf8.IsValid(utf8.Span))
        {
            throw invalid($"{what} is not valid UTF-8.");
        }
        try
        {
            return JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = maxDepth });
        }
        catch (JsonException e)
        {
            throw invalid($"{what} is not valid JSON ({e.Message}).", e);
        }
    }

    /// <summary>The properties of an object, throwing on the first repeated name; <paramref name="where"/> names the object in messages.</summary>
    public static IEnumerable<JsonProperty> UniqueProperties(JsonElement element, string where, Invalid invalid)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var property in element.EnumerateObject())
        {
            if (!seen.Add(property.Name))
            {
                throw invalid($"{where} names '{property.Name}' more than once.");
            }
            yield return property;
        }
    }
}
