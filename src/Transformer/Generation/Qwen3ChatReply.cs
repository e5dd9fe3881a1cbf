namespace Microsoft.ML.Qwen3Moe;

/// <summary>An assistant reply split as the Qwen3 chat template splits it: the reasoning in its think block, and the answer.</summary>
/// <param name="Reasoning">The text inside <c>&lt;think&gt;…&lt;/think&gt;</c> (newlines around it trimmed); empty when there is none.</param>
/// <param name="Answer">The text after the think block (leading newlines trimmed), or the whole reply when there is no think block.</param>
public sealed record Qwen3ChatReply(string Reasoning, string Answer)
{
    private const string Open = "<think>", Close = "</think>";

    /// <summary>
    /// Splits a generated reply: everything before <c>&lt;/think&gt;</c> (after an opening <c>&lt;think&gt;</c>) is
    /// reasoning, the rest the answer; an unclosed think block at the start (generation stopped while thinking) is all
    /// reasoning.
    /// </summary>
    public static Qwen3ChatReply Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int close = text.IndexOf(Close, StringComparison.Ordinal);
        if (close >= 0)
            return new Qwen3ChatReply(StripOpen(text[..close]).Trim('\n'), text[(close + Close.Length)..].TrimStart('\n'));
        var start = text.TrimStart('\n');
        return start.StartsWith(Open, StringComparison.Ordinal)
            ? new Qwen3ChatReply(start[Open.Length..].Trim('\n'), string.Empty)
            : new Qwen3ChatReply(string.Empty, text);
    }

    /// <summary>The reply as the assistant turn of a conversation history (the template keeps its reasoning only after the last user turn).</summary>
    public Tokenization.ChatMessage ToMessage() => Tokenization.ChatMessage.Assistant(Answer, Reasoning);

    private static string StripOpen(string s)
    {
        int open = s.IndexOf(Open, StringComparison.Ordinal);
        return open >= 0 ? s[(open + Open.Length)..] : s;
    }
}
