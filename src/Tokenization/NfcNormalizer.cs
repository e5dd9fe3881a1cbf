using System.Text;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// Unicode NFC, as Qwen's <c>tokenizer.json</c> declares; Microsoft.ML.Tokenizers 2.0.1 ships no NFC normaliser.
/// Lone surrogates (which <see cref="string.Normalize()"/> rejects with an exception, and which UTF-8 cannot carry)
/// become U+FFFD first, as a UTF-8 encoder would write them.
/// </summary>
internal sealed class NfcNormalizer : Normalizer
{
    /// <summary>The one instance (stateless).</summary>
    public static NfcNormalizer Instance { get; } = new();

    /// <inheritdoc/>
    public override string Normalize(string original) => NeedsWork(original) ? Apply(original) : original;

    /// <inheritdoc/>
    public override string Normalize(ReadOnlySpan<char> original) =>
        NeedsWork(original) ? Apply(original.ToString()) : original.ToString();

    /// <summary>
    /// <c>false</c> when <paramref name="text"/> is certainly NFC and free of surrogates: every code point below
    /// U+0300 (the first combining mark) is NFC-stable, so the common ASCII/Latin case costs one vectorised scan.
    /// </summary>
    public static bool NeedsWork(ReadOnlySpan<char> text) => text.IndexOfAnyInRange('\u0300', '\uFFFF') >= 0;

    /// <summary>Replaces lone surrogates by U+FFFD, then applies NFC.</summary>
    public static string Apply(string text)
    {
        text = ReplaceLoneSurrogates(text);
        if (text.AsSpan().IndexOfAny('\uFFFE', '\uFFFF') < 0)
        {
            return Nfc(text);
        }

        // .NET refuses to normalise text holding the noncharacters U+FFFE/U+FFFF (Hugging Face keeps them); they
        // never compose with a neighbour, so normalising the runs between them is the same as normalising the whole.
        var result = new StringBuilder(text.Length);
        int start = 0;
        for (int found; (found = text.AsSpan(start).IndexOfAny('\uFFFE', '\uFFFF')) >= 0; start += found + 1)
        {
            result.Append(Nfc(text.Substring(start, found))).Append(text[start + found]);
        }

        return result.Append(Nfc(text[start..])).ToString();
    }

    private static string Nfc(string text) =>
        text.IsNormalized(NormalizationForm.FormC) ? text : text.Normalize(NormalizationForm.FormC);

    private static string ReplaceLoneSurrogates(string text)
    {
        char[]? copy = null;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c))
            {
                continue;
            }

            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }

            copy ??= text.ToCharArray();
            copy[i] = '\uFFFD';
        }

        return copy is null ? text : new string(copy);
    }
}
