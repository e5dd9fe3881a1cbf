using System.Text;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// Turns generated ids into text one id at a time. A character whose UTF-8 bytes are spread over several tokens
/// (common for CJK and emoji) is held back until complete, so no U+FFFD appears where decoding the whole sequence
/// gives none. The concatenation of all returned strings, with <see cref="Flush"/>, equals
/// <see cref="Qwen3Tokenizer.Decode"/> of all ids. Not thread-safe: one instance per stream.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers decodes whole id lists only (one token of a split character gives U+FFFD), and keeps its
/// byte-level table internal, so this works on the token bytes of <see cref="Qwen3Tokenizer"/>.
/// </remarks>
public sealed class Qwen3StreamingDecoder
{
    private readonly Qwen3Tokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    internal Qwen3StreamingDecoder(Qwen3Tokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one id; returns the text completed by it (often empty while a character is incomplete).</summary>
    public string Append(int id) => Convert(_tokenizer.GetTokenBytes(id, _skipSpecialTokens), flush: false);

    /// <summary>Ends the stream: returns what is held back, with U+FFFD for bytes that never formed a character, and resets.</summary>
    public string Flush() => Convert([], flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        int needed = _utf8.GetCharCount(bytes, flush);
        if (needed > _chars.Length)
        {
            _chars = new char[Math.Max(needed, _chars.Length * 2)];
        }

        int written = _utf8.GetChars(bytes, _chars, flush);
        return written == 0 ? string.Empty : new string(_chars, 0, written);
    }
}
