using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Microsoft.ML.Qwen3Moe.Generation;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using TemplateMessage = Microsoft.ML.Qwen3Moe.Tokenization.ChatMessage;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// An <see cref="IChatClient"/> (Microsoft.Extensions.AI) over a Qwen3-MoE model: the conversation is rendered with the
/// Qwen3 chat template, the reply is generated with the KV cache and split into reasoning
/// (<see cref="TextReasoningContent"/>) and answer (<see cref="TextContent"/>). <see cref="ChatOptions"/> maps to
/// <see cref="TextGenerationOptions"/>: Temperature (0 or unset: greedy), TopP, TopK, MaxOutputTokens, StopSequences,
/// Seed; <see cref="ChatOptions.Instructions"/> becomes a leading system turn; thinking follows <see cref="EnableThinking"/>,
/// or <c>AdditionalProperties["enable_thinking"]</c> (bool) per call. Cancellation is honoured between tokens; usage
/// reports prompt and generated token counts. Does not own the model.
/// </summary>
public sealed class Qwen3MoeChatClient : IChatClient
{
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key that turns thinking on or off for one call (bool).</summary>
    public const string EnableThinkingKey = "enable_thinking";

    private readonly Qwen3TextGenerator _generator;
    private readonly ChatClientMetadata _metadata;

    /// <summary>A chat client over <paramref name="generator"/> (for example <see cref="Qwen3MoeTransformer.TextGenerator"/>).</summary>
    /// <param name="generator">The text generator of the model.</param>
    /// <param name="modelId">The id reported as <see cref="ChatResponse.ModelId"/>. Default "qwen3-moe".</param>
    public Qwen3MoeChatClient(Qwen3TextGenerator generator, string modelId = "qwen3-moe")
    {
        ArgumentNullException.ThrowIfNull(generator);
        _generator = generator;
        _metadata = new ChatClientMetadata("Microsoft.ML.Qwen3Moe", null, modelId);
    }

    /// <summary>Whether the model may reason before answering when a call does not say (<see cref="EnableThinkingKey"/>). Default true, as the
    /// template.</summary>
    public bool EnableThinking { get; set; } = true;

    /// <summary>Most tokens of a reply when <see cref="ChatOptions.MaxOutputTokens"/> is unset. Default 512.</summary>
    public int DefaultMaxOutputTokens { get; set; } = 512;

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var (conversation, thinking, o) = Prepare(messages, options);
        var (reply, completion) = await Task.Run(() => _generator.Chat(conversation, thinking, o, cancellationToken), cancellationToken).ConfigureAwait(false);
        var contents = new List<AIContent>();
        if (reply.Reasoning.Length > 0) contents.Add(new TextReasoningContent(reply.Reasoning));
        contents.Add(new TextContent(reply.Answer));
        return new ChatResponse(new AIChatMessage(ChatRole.Assistant, contents))
        {
            ModelId = _metadata.DefaultModelId,
            FinishReason = Map(completion.FinishReason),
            Usage = Usage(completion.PromptTokenCount, completion.TokenIds.Count),
            CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (conversation, thinking, o) = Prepare(messages, options);
        int promptTokens = _generator.Tokenizer.EncodeChat(conversation, enableThinking: thinking).Length;
        string responseId = Guid.NewGuid().ToString("N");
        using var deltas = _generator.StreamChat(conversation, thinking, o, cancellationToken).GetEnumerator();
        // each step runs on the thread pool: generation is synchronous device work
        while (await Task.Run(deltas.MoveNext, cancellationToken).ConfigureAwait(false))
        {
            var d = deltas.Current;
            if (d.FinishReason is { } reason)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, new List<AIContent> { new UsageContent(Usage(promptTokens, d.TokenCount)) })
                {
                    FinishReason = Map(reason), ModelId = _metadata.DefaultModelId, ResponseId = responseId,
                };
                yield break;
            }
            AIContent content = d.IsReasoning ? new TextReasoningContent(d.Text) : new TextContent(d.Text);
            yield return new ChatResponseUpdate(ChatRole.Assistant, new List<AIContent> { content }) { ModelId = _metadata.DefaultModelId,
                ResponseId = responseId };
        }
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(_generator)) return _generator;
        if (serviceType.IsInstanceOfType(_generator.Tokenizer)) return _generator.Tokenizer;
        return null;
    }

    /// <summary>Nothing to free: the model belongs to its owner.</summary>
    public void Dispose()
    {
    }

    private (IReadOnlyList<TemplateMessage> Conversation, bool Thinking, TextGenerationOptions Options) Prepare(IEnumerable<AIChatMessage> messages,
        ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var conversation = new List<TemplateMessage>();
        if (!string.IsNullOrEmpty(options?.Instructions)) conversation.Add(TemplateMessage.System(options.Instructions));
        foreach (var m in messages)
        {
            string role = m.Role == ChatRole.System ? "system" : m.Role == ChatRole.User ? "user" : m.Role == ChatRole.Assistant ? "assistant"
                : m.Role == ChatRole.Tool
                    ? "tool" : throw new ArgumentException($"Role '{m.Role}' is not one the Qwen3 chat template knows (system, user, assistant, tool).",
                        nameof(messages));
            var reasoning = string.Concat(m.Contents.OfType<TextReasoningContent>().Select(c => c.Text));
            conversation.Add(new TemplateMessage(role, m.Text, role == "assistant" && reasoning.Length > 0 ? reasoning : null));
        }
        bool thinking = EnableThinking;
        if (options?.AdditionalProperties?.TryGetValue(EnableThinkingKey, out object? value) == true)
            thinking = value is bool b
                ? b : throw new ArgumentException($"AdditionalProperties[\"{EnableThinkingKey}\"] must be a bool; got {value?.GetType().Name ?? "null"}.",
                    nameof(options));
        var o = new TextGenerationOptions
        {
            MaxNewTokens = options?.MaxOutputTokens ?? DefaultMaxOutputTokens,
            Temperature = options?.Temperature ?? 0f,
            TopP = options?.TopP ?? 1f,
            TopK = options?.TopK ?? 0,
            Seed = options?.Seed,
            StopSequences = options?.StopSequences?.ToList() ?? new List<string>(),
        };
        o.Validate();
        return (conversation, thinking, o);
    }

    private static ChatFinishReason Map(FinishReason reason) => reason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static UsageDetails Usage(int input, int output) => new() { InputTokenCount = input, OutputTokenCount = output, TotalTokenCount = input + output };
}
