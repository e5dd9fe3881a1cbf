using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// A hand-written equivalent of the Qwen2/Qwen3 split regex (<see cref="Pattern"/>), used in place of
/// <see cref="System.Text.RegularExpressions.Regex"/> on the encoding hot path.
/// </summary>
/// <remarks>
/// <para>Why not the regex (as Microsoft.ML.Tokenizers' <c>RegexPreTokenizer</c> does):</para>
/// <list type="bullet">
/// <item>Speed and scaling: a shared <c>Regex</c> hands its single cached runner to one thread at a time, so
/// concurrent callers allocate new runners; the pre-tokenizer also allocates an iterator per call. This scanner
/// allocates nothing and keeps no shared state.</item>
/// <item>Exactness: Hugging Face matches on code points, .NET's regex on UTF-16 units, so a letter or digit outside
/// the BMP (e.g. U+1D400, U+20000) is <c>\p{L}</c>/<c>\p{N}</c> for Hugging Face but not for .NET. This scanner
/// classifies whole code points, as Hugging Face does.</item>
/// </list>
/// <para>The alternatives are tried in the regex's order at each position, with the same greedy/backtracking
/// outcome:</para>
/// <code>
/// 1 (?i:'s|'t|'re|'ve|'m|'ll|'d)   2 [^\r\n\p{L}\p{N}]?\p{L}+   3 \p{N}   4 ' '?[^\s\p{L}\p{N}]+[\r\n]*
/// 5 \s*[\r\n]+   6 \s+(?!\S)   7 \s+
/// </code>
/// <para>Every position matches one of them, so the pieces cover the text.</para>
/// </remarks>
internal static class Qwen2PreTokenizer
{
    /// <summary>The split pattern of Qwen2/Qwen2.5/Qwen3 <c>tokenizer.json</c> files, which this class implements.</summary>
    public const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private enum CharClass : byte
    {
        Other,
        Letter,
        Number,
        Space,
        NewLine, // '\r' or '\n': whitespace that alternatives 2 and 4/5 treat specially.
    }

    private static readonly CharClass[] s_ascii = BuildAsciiTable();

    /// <summary>Returns the end (exclusive) of the piece that starts at <paramref name="start"/>.</summary>
    /// <param name="text">Normalised text without lone surrogates.</param>
    /// <param name="start">Start of the piece; less than the text length.</param>
    public static int NextPieceEnd(ReadOnlySpan<char> text, int start)
    {
        CharClass first = Classify(text, start, out int firstLength);
        int afterFirst = start + firstLength;

        // 1: contractions.
        if (text[start] == '\'' && TryMatchContraction(text, afterFirst, out int contractionEnd))
        {
            return contractionEnd;
        }

        // 2: an optional non-letter, non-digit, non-newline character, then letters.
        if (first == CharClass.Letter)
        {
            return SkipClass(text, afterFirst, CharClass.Letter);
        }

        if (first is CharClass.Other or CharClass.Space && afterFirst < text.Length &&
            Classify(text, afterFirst, out int secondLength) == CharClass.Letter)
        {
            return SkipClass(text, afterFirst + secondLength, CharClass.Letter);
        }

        // 3: one digit.
        if (first == CharClass.Number)
        {
            return afterFirst;
        }

        // 4: an optional ' ', then symbols, then newlines.
        if (first == CharClass.Other)
        {
            return SkipNewLines(text, SkipClass(text, afterFirst, CharClass.Other));
        }

        if (text[start] == ' ' && afterFirst < text.Length && Classify(text, afterFirst, out _) == CharClass.Other)
        {
            return SkipNewLines(text, SkipClass(text, afterFirst, CharClass.Other));
        }

        // 5-7: whitespace (all whitespace is in the BMP, one char each).
        int runEnd = start;
        int lastNewLine = -1;
        while (runEnd < text.Length && Classify(text, runEnd, out _) is CharClass.Space or CharClass.NewLine)
        {
            if (text[runEnd] is '\r' or '\n')
            {
                lastNewLine = runEnd;
            }

            runEnd++;
        }

        if (lastNewLine >= 0)
        {
            return lastNewLine + 1; // 5: greedy \s* backs off to the last newline of the run.
        }

        if (runEnd == text.Length || runEnd - start == 1)
        {
            return runEnd; // 6 at the end of text, or 7 for a single space before a non-space.
        }

        return runEnd - 1; // 6: leave the last space to prefix the next piece.
    }

    private static bool TryMatchContraction(ReadOnlySpan<char> text, int i, out int end)
    {
        end = i;
        if (i >= text.Length)
        {
            return false;
        }

        // Case-insensitive as Unicode simple case folding (Oniguruma's (?i)): 'ſ' (U+017F) folds to 's'.
        switch (text[i])
        {
            case 's' or 'S' or '\u017F' or 't' or 'T' or 'm' or 'M' or 'd' or 'D':
                end = i + 1;
                return true;
            case 'r' or 'R' or 'v' or 'V':
                end = i + 2;
                return i + 1 < text.Length && text[i + 1] is 'e' or 'E';
            case 'l' or 'L':
                end = i + 2;
                return i + 1 < text.Length && text[i + 1] is 'l' or 'L';
            default:
                return false;
        }
    }

    private static int SkipClass(ReadOnlySpan<char> text, int i, CharClass cls)
    {
        while (i < text.Length && Classify(text, i, out int length) == cls)
        {
            i += length;
        }

        return i;
    }

    private static int SkipNewLines(ReadOnlySpan<char> text, int i)
    {
        while (i < text.Length && text[i] is '\r' or '\n')
        {
            i++;
        }

        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static CharClass Classify(ReadOnlySpan<char> text, int i, out int length)
    {
        char c = text[i];
        length = 1;
        if (c < 128)
        {
            return s_ascii[c];
        }

        return ClassifyNonAscii(text, i, ref length);
    }

    private static CharClass ClassifyNonAscii(ReadOnlySpan<char> text, int i, ref int length)
    {
        char c = text[i];
        UnicodeCategory category;
        if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
        {
            length = 2;
            category = Rune.GetUnicodeCategory(new Rune(c, text[i + 1]));
        }
        else
        {
            // Whitespace per Unicode White_Space (what \s means in Oniguruma and in .NET): Z*, U+0085; the ASCII
            // controls are in the table above.
            if (c == '\u0085')
            {
                return CharClass.Space;
            }

            category = char.GetUnicodeCategory(c);
        }

        return category switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharClass.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharClass.Number,
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => CharClass.Space,
            _ => CharClass.Other,
        };
    }

    private static CharClass[] BuildAsciiTable()
    {
        var table = new CharClass[128];
        for (int c = 0; c < 128; c++)
        {
            table[c] = c switch
            {
                '\r' or '\n' => CharClass.NewLine,
                '\t' or '\v' or '\f' or ' ' => CharClass.Space,
                >= 'a' and <= 'z' or >= 'A' and <= 'Z' => CharClass.Letter,
                >= '0' and <= '9' => CharClass.Number,
                _ => CharClass.Other,
            };
        }

        return table;
    }
}
