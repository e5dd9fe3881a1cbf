using System.Security.Cryptography;
using System.Text;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// The Qwen3 chat template (ChatML turns, think blocks, generation prompt, <c>enable_thinking</c>), rendered in C#
/// exactly as the Jinja template of Qwen3's <c>tokenizer_config.json</c> renders it, without a Jinja engine.
/// </summary>
/// <remarks>
/// Only that template is recognised (by its text); <see cref="FromJinja"/> rejects any other rather than guess.
/// Tool definitions and assistant tool calls (which need Jinja's <c>tojson</c>) are not supported; tool responses
/// (role <c>tool</c>) are.
/// </remarks>
public sealed class Qwen3ChatTemplate
{
    /// <summary>SHA-256 of the template in the tokenizer_config.json of the Qwen3 (and Qwen3-MoE) releases, with \n line ends.</summary>
    private const string Qwen3TemplateSha256 = "87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5";

    private const string ThinkOpen = "<think>";
    private const string ThinkClose = "</think>";

    private Qwen3ChatTemplate()
    {
    }

    /// <summary>The Qwen3 template.</summary>
    public static Qwen3ChatTemplate Qwen3 { get; } = new();

    /// <summary>Returns the renderer for a Jinja chat template, if it is the Qwen3 template.</summary>
    /// <exception cref="NotSupportedException">The template is another one.</exception>
    public static Qwen3ChatTemplate FromJinja(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(template.Replace("\r\n", "\n", StringComparison.Ordinal)));
        if (Convert.ToHexStringLower(hash) != Qwen3TemplateSha256)
        {
            throw new NotSupportedException(
                "The chat template in tokenizer_config.json is not the Qwen3 template, the only one this library renders " +
                $"(SHA-256 {Qwen3TemplateSha256} of its text). Render the prompt yourself and use Qwen3Tokenizer.Encode.");
        }

        return Qwen3;
    }

    /// <summary>Renders a conversation to the prompt text (encode it with <see cref="Qwen3Tokenizer.Encode(string)"/>).</summary>
    /// <param name="messages">The turns; a <c>system</c> turn, if any, usually comes first.</param>
    /// <param name="addGenerationPrompt">End with <c>&lt;|im_start|&gt;assistant\n</c> so the model answers next.</param>
    /// <param name="enableThinking">
    /// With <c>false</c>, the generation prompt also holds an empty think block, which tells Qwen3 not to reason.
    /// </param>
    /// <exception cref="ArgumentException">No messages, a null content, or a role the template does not know.</exception>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool enableThinking = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        Validate(messages);
        var text = new StringBuilder();
        if (messages[0].Role == "system")
        {
            AppendTurn(text, "system", messages[0].Content);
        }

        int lastQuery = LastQueryIndex(messages);
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage message = messages[i];
            switch (message.Role)
            {
                case "user":
                case "system" when i > 0:
                    AppendTurn(text, message.Role, message.Content);
                    break;
                case "assistant":
                    AppendAssistant(text, message, afterLastQuery: i > lastQuery, isLast: i == messages.Count - 1);
                    break;
                case "tool":
                    // Consecutive tool responses share one user turn.
                    if (i == 0 || messages[i - 1].Role != "tool")
                    {
                        text.Append("<|im_start|>user");
                    }

                    text.Append("\n<tool_response>\n").Append(message.Content).Append("\n</tool_response>");
                    if (i == messages.Count - 1 || messages[i + 1].Role != "tool")
                    {
                        text.Append("<|im_end|>\n");
                    }

                    break;
            }
        }

        if (addGenerationPrompt)
        {
            text.Append("<|im_start|>assistant\n");
            if (!enableThinking)
            {
                text.Append("<think>\n\n</think>\n\n");
            }
        }

        return text.ToString();
    }

    private static void Validate(IReadOnlyList<ChatMessage> messages)
    {
        if (messages.Count == 0)
        {
            throw new ArgumentException("A conversation needs at least one message.", nameof(messages));
        }

        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage? message = messages[i];
            if (message?.Content is null || message.Role is null)
            {
                throw new ArgumentException($"messages[{i}] is null or has a null role or content.", nameof(messages));
            }

            if (message.Role is not ("system" or "user" or "assistant" or "tool"))
            {
                throw new ArgumentException($"messages[{i}] has role '{message.Role}'; the Qwen3 template knows system, user, assistant and tool.",
                    nameof(messages));
            }
        }
    }

    /// <summary>The last user turn that is not a wrapped tool response (the template's <c>ns.last_query_index</c>).</summary>
    private static int LastQueryIndex(IReadOnlyList<ChatMessage> messages)
    {
        for (int i = messages.Count - 1; i >= 0; i--)
        {
            string content = messages[i].Content;
            if (messages[i].Role == "user" &&
                !(content.StartsWith("<tool_response>", StringComparison.Ordinal) && content.EndsWith("</tool_response>", StringComparison.Ordinal)))
            {
                return i;
            }
        }

        return messages.Count - 1;
    }

    private static void AppendTurn(StringBuilder text, string role, string content) =>
        text.Append("<|im_start|>").Append(role).Append('\n').Append(content).Append("<|im_end|>\n");

    private static void AppendAssistant(StringBuilder text, ChatMessage message, bool afterLastQuery, bool isLast)
    {
        string content = message.Content;
        string reasoning = string.Empty;
        if (message.ReasoningContent is not null)
        {
            reasoning = message.ReasoningContent;
        }
        else if (content.Contains(ThinkClose, StringComparison.Ordinal))
        {
            // Python: content.split('</think>')[-1].lstrip('\n'), and
            // content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n').
            string[] parts = content.Split(ThinkClose);
            reasoning = parts[0].TrimEnd('\n').Split(ThinkOpen)[^1].TrimStart('\n');
            content = parts[^1].TrimStart('\n');
        }

        text.Append("<|im_start|>assistant\n");
        if (afterLastQuery && (isLast || reasoning.Length > 0))
        {
            text.Append("<think>\n").Append(reasoning.Trim('\n')).Append("\n</think>\n\n").Append(content.TrimStart('\n'));
        }
        else
        {
            text.Append(content);
        }

        text.Append("<|im_end|>\n");
    }
}
