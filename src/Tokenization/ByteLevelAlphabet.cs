namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// The GPT-2 byte-level alphabet: each of the 256 byte values is written as one printable character
/// (space as 'Ġ', newline as 'Ċ', ...), which is how byte-level BPE vocabularies spell their tokens.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers 2.0.1 has this table (<c>ByteToUnicodeEncoding</c>) but keeps it internal; we need the
/// reverse direction to turn vocabulary entries back into bytes for decoding and streaming.
/// </remarks>
internal static class ByteLevelAlphabet
{
    private static readonly char[] s_byteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> s_charToByte = BuildCharToByte(s_byteToChar);

    /// <summary>The character that stands for byte <paramref name="value"/>.</summary>
    public static char ToChar(byte value) => s_byteToChar[value];

    /// <summary>Turns a vocabulary entry spelled in the byte-level alphabet back into its bytes.</summary>
    /// <returns><c>false</c> when <paramref name="token"/> holds a character outside the alphabet.</returns>
    public static bool TryGetBytes(string token, out byte[] bytes)
    {
        bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!s_charToByte.TryGetValue(token[i], out bytes[i]))
            {
                return false;
            }
        }

        return true;
    }

    private static char[] BuildByteToChar()
    {
        // Printable Latin-1 bytes keep their own code point; the others (controls, space, 0x7F-0xA0, 0xAD)
        // are moved, in order, to U+0100 and up.
        var map = new char[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + shifted++);
        }

        return map;
    }

    private static Dictionary<char, byte> BuildCharToByte(char[] byteToChar)
    {
        var map = new Dictionary<char, byte>(256);
        for (int b = 0; b < 256; b++)
        {
            map[byteToChar[b]] = (byte)b;
        }

        return map;
    }
}
