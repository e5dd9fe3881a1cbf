namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>The parts of <c>tokenizer_config.json</c> we use.</summary>
/// <param name="EosToken">The end-of-sequence token's text.</param>
/// <param name="PadToken">The padding token's text.</param>
/// <param name="ChatTemplate">The Jinja chat template, or null.</param>
/// <param name="AddedTokens">Added tokens from <c>added_tokens_decoder</c> (empty when absent).</param>
internal sealed record TokenizerSettings(string EosToken, string PadToken, string? ChatTemplate, IReadOnlyList<AddedToken> AddedTokens)
{
    /// <summary>Qwen3's values, used when there is no <c>tokenizer_config.json</c>.</summary>
    public static TokenizerSettings Default { get; } = new("<|im_end|>", "<|endoftext|>", null, []);

    /// <summary>The file these settings were read from (null for <see cref="Default"/>).</summary>
    public string? Source { get; init; }

    /// <summary>Bytes of that file.</summary>
    public long SourceBytes { get; init; }
}
