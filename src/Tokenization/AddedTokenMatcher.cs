using System.Buffers;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// Finds added tokens in raw (not yet normalised) text, leftmost first and longest at a position, as Hugging Face
/// does before it normalises and pre-tokenises the text between them.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers' <c>RegexPreTokenizer</c> does this after normalisation, with a regex alternation
/// (leftmost, first listed). Matching first keeps the added tokens out of NFC (e.g. <c>"&lt;think&gt;"</c> followed
/// by U+0338 would otherwise compose '&gt;' + U+0338 into '≯' and lose the token), and needs no regex.
/// </remarks>
internal sealed class AddedTokenMatcher
{
    private readonly SearchValues<char> _firstChars;
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens
            .Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    /// <summary>Finds the first added token at or after <paramref name="start"/>.</summary>
    /// <returns>The token's position, or -1 (then <paramref name="token"/> is null).</returns>
    public int Find(ReadOnlySpan<char> text, int start, out AddedToken? token)
    {
        int i = start;
        while (i < text.Length)
        {
            int found = text[i..].IndexOfAny(_firstChars);
            if (found < 0)
            {
                break;
            }

            i += found;
            foreach (AddedToken candidate in _byFirstChar[text[i]])
            {
                if (text[i..].StartsWith(candidate.Content, StringComparison.Ordinal))
                {
                    token = candidate;
                    return i;
                }
            }

            i++;
        }

        token = null;
        return -1;
    }
}
