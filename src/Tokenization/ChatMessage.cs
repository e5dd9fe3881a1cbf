namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>One turn of a conversation for <see cref="Qwen3ChatTemplate"/>.</summary>
/// <param name="Role"><c>system</c>, <c>user</c>, <c>assistant</c> or <c>tool</c> (a tool's response).</param>
/// <param name="Content">The text of the turn.</param>
/// <param name="ReasoningContent">
/// For an assistant turn, its reasoning (rendered in a think block when the turn follows the last user query); when
/// null, the template takes it from a <c>&lt;think&gt;...&lt;/think&gt;</c> block at the start of <paramref name="Content"/>.
/// </param>
public sealed record ChatMessage(string Role, string Content, string? ReasoningContent = null)
{
    /// <summary>A system turn.</summary>
    public static ChatMessage System(string content) => new("system", content);

    /// <summary>A user turn.</summary>
    public static ChatMessage User(string content) => new("user", content);

    /// <summary>An assistant turn.</summary>
    public static ChatMessage Assistant(string content, string? reasoningContent = null) => new("assistant", content, reasoningContent);
}
