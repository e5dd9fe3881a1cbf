using System.Buffers;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// <see cref="Qwen3Tokenizer"/> as a Microsoft.ML.Tokenizers <see cref="Tokenizer"/>, for code written against that
/// abstraction: the same ids as <see cref="Qwen3Tokenizer.Encode"/> (Hugging Face's, unlike the library's recipe
/// <see cref="Qwen3Tokenizer.BpeTokenizer"/>, which differs on a few edge cases), and the same decoding. Offsets are
/// character ranges of the NFC-normalised text (the input itself unless normalisation changed it, which
/// <see cref="EncodeResults{T}.NormalizedText"/> then reports); a token that covers part of a character's UTF-8 bytes
/// covers that character. Thread-safe.
/// </summary>
public sealed class Qwen3TokenizerAdapter : Tokenizer
{
    private readonly Qwen3Tokenizer _tokenizer;

    /// <summary>Wraps <paramref name="tokenizer"/>.</summary>
    public Qwen3TokenizerAdapter(Qwen3Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
    }

    /// <summary>The wrapped tokenizer.</summary>
    public Qwen3Tokenizer Qwen3Tokenizer => _tokenizer;

    /// <inheritdoc />
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        string input = text ?? textSpan.ToString();
        int[] all = _tokenizer.Encode(input);
        int[] ids = Limit(all, settings.MaxTokenCount);
        string normalized = input.IsNormalized(NormalizationForm.FormC) ? input : input.Normalize(NormalizationForm.FormC);
        // byte offset -> index of the character that byte belongs to
        byte[] utf8 = Encoding.UTF8.GetBytes(normalized);
        var charOfByte = new int[utf8.Length + 1];
        for (int c = 0, b = 0; c < normalized.Length; c++)
        {
            int width = char.IsHighSurrogate(normalized[c]) && c + 1 < normalized.Length ? 4 : Encoding.UTF8.GetByteCount(normalized.AsSpan(c, 1));
            for (int k = 0; k < width; k++) charOfByte[b + k] = c;
            if (width == 4) c++;
            b += width;
        }
        charOfByte[utf8.Length] = normalized.Length;
        var tokens = new List<EncodedToken>(ids.Length);
        int start = 0, end = 0;
        foreach (int id in ids)
        {
            var bytes = _tokenizer.GetTokenBytes(id, skipSpecialTokens: false);
            int stop = Math.Min(start + bytes.Length, utf8.Length);
            end = stop == 0 ? 0 : stop >= utf8.Length ? normalized.Length : CharEnd(charOfByte, normalized, stop);
            tokens.Add(new EncodedToken(id, Encoding.UTF8.GetString(bytes), new Range(charOfByte[start], end)));
            start = stop;
        }
        return new EncodeResults<EncodedToken>
        {
            Tokens = tokens,
            NormalizedText = ReferenceEquals(normalized, input) ? null : normalized,
            CharsConsumed = ids.Length < all.Length ? end : normalized.Length,
        };
    }

    /// <inheritdoc />
    protected override EncodeResults<int> EncodeToIds(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        if (settings.MaxTokenCount < int.MaxValue)
        {
            var tokens = EncodeToTokens(text, textSpan, settings);
            return new EncodeResults<int> { Tokens = tokens.Tokens.Select(t => t.Id).ToArray(), NormalizedText = tokens.NormalizedText,
                CharsConsumed = tokens.CharsConsumed };
        }
        string input = text ?? textSpan.ToString();
        return new EncodeResults<int> { Tokens = _tokenizer.Encode(input), NormalizedText = null, CharsConsumed = input.Length };
    }

    /// <inheritdoc />
    protected override int CountTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings) =>
        Math.Min(_tokenizer.Encode(text ?? textSpan.ToString()).Length, settings.MaxTokenCount);

    /// <inheritdoc />
    public override string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids);

    /// <inheritdoc />
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var list = ids as IReadOnlyList<int> ?? ids.ToArray();
        string all = _tokenizer.Decode(list);
        if (all.Length <= destination.Length)
        {
            all.AsSpan().CopyTo(destination);
            (idsConsumed, charsWritten) = (list.Count, all.Length);
            return OperationStatus.Done;
        }
        // the longest prefix of ids whose text fits
        int n = list.Count - 1;
        string prefix = _tokenizer.Decode(list.Take(n));
        while (n > 0 && prefix.Length > destination.Length) prefix = _tokenizer.Decode(list.Take(--n));
        prefix.AsSpan().CopyTo(destination);
        (idsConsumed, charsWritten) = (n, prefix.Length);
        return OperationStatus.DestinationTooSmall;
    }

    private static int[] Limit(int[] ids, int max) => max < ids.Length ? ids[..max] : ids;

    /// <summary>The end (exclusive) of the character holding byte <paramref name="stop"/> - 1.</summary>
    private static int CharEnd(int[] charOfByte, string text, int stop)
    {
        int c = charOfByte[stop - 1];
        return char.IsHighSurrogate(text[c]) ? c + 2 : c + 1;
    }
}
