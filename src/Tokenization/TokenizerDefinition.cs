namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>What the tokenizer files say, read and checked by <see cref="TokenizerFiles"/>.</summary>
internal sealed class TokenizerDefinition
{
    /// <summary>Where it came from, for error messages.</summary>
    public required string Source { get; init; }

    /// <summary>BPE vocabulary in the byte-level alphabet (token to id), without the added tokens.</summary>
    public required Dictionary<string, int> Vocabulary { get; init; }

    /// <summary>Bytes of the file(s) the vocabulary, merges and added tokens were read from; ids are bounded by it.</summary>
    public long SourceBytes { get; init; }

    /// <summary>Merges in rank order, each as "left right".</summary>
    public required List<string> Merges { get; init; }

    /// <summary>Added tokens (special or not), matched whole in raw text.</summary>
    public required List<AddedToken> AddedTokens { get; init; }

    /// <summary>Settings from <c>tokenizer_config.json</c>, or the defaults when there is none.</summary>
    public TokenizerSettings Settings { get; set; } = TokenizerSettings.Default;
}
