namespace Microsoft.ML.Qwen3Moe;

/// <summary>Settings of <see cref="Qwen3MoeGenerationTransformer"/>: columns, batching, the chat template, and the sampling of <see
/// cref="TextGenerationOptions"/>.</summary>
public sealed class Qwen3MoeGenerationOptions : TextGenerationOptions
{
    /// <summary>Text column holding the prompts. Default "Prompt".</summary>
    public string PromptColumnName { get; set; } = "Prompt";

    /// <summary>Text column added with the completions. Default "Completion".</summary>
    public string CompletionColumnName { get; set; } = "Completion";

    /// <summary>Prompts generated together (left padded to the longest). Default 8.</summary>
    public int BatchSize { get; set; } = 8;

    /// <summary>
    /// Whether each prompt is a user message rendered with the Qwen3 chat template (after <see cref="SystemPrompt"/>),
    /// and the completion column holds the answer without the reasoning. Default false (the prompt is raw text).
    /// </summary>
    public bool ApplyChatTemplate { get; set; }

    /// <summary>With <see cref="ApplyChatTemplate"/>: whether the model may reason first (false: the template's empty think block). Default false.</summary>
    public bool EnableThinking { get; set; }

    /// <summary>With <see cref="ApplyChatTemplate"/>: an optional system message before each prompt. Default none.</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>Throws when a value is out of range; the message names the option.</summary>
    public new void Validate()
    {
        base.Validate();
        if (string.IsNullOrEmpty(PromptColumnName)) throw new ArgumentException("PromptColumnName must be set.", nameof(PromptColumnName));
        if (string.IsNullOrEmpty(CompletionColumnName)) throw new ArgumentException("CompletionColumnName must be set.", nameof(CompletionColumnName));
        if (BatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "BatchSize must be positive.");
    }
}
