namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>
/// How tokens are chosen and when generation stops. Defaults: greedy (temperature 0), 256 new tokens, no penalty.
/// Sampling applies, in Hugging Face's order: repetition penalty, temperature, top-k, top-p, min-p, then draws from the
/// softmax with a generator seeded by <see cref="Seed"/>.
/// </summary>
public class GenerationOptions
{
    /// <summary>Most tokens generated per sequence (EOS included). Default 256.</summary>
    public int MaxNewTokens { get; set; } = 256;

    /// <summary>Softmax temperature; 0 (the default) means greedy decoding (argmax), as Hugging Face's <c>do_sample=False</c>.</summary>
    public float Temperature { get; set; }

    /// <summary>Keep only the K most likely tokens before sampling; 0 (default) keeps all.</summary>
    public int TopK { get; set; }

    /// <summary>Nucleus sampling: keep the smallest set of most likely tokens whose probability reaches P; 1 (default) keeps all.</summary>
    public float TopP { get; set; } = 1f;

    /// <summary>Drop tokens whose probability is below MinP times the most likely one's; 0 (default) keeps all.</summary>
    public float MinP { get; set; }

    /// <summary>
    /// Hugging Face's repetition penalty: the logit of every token already in the row (prompt or generated) is divided by
    /// it when positive and multiplied by it when negative. Applies to greedy decoding too. 1 (default) is off.
    /// </summary>
    public float RepetitionPenalty { get; set; } = 1f;

    /// <summary>Seed of the sampling generator: the same seed, prompts and options give the same tokens on a device. Null (default) draws a seed.</summary>
    public long? Seed { get; set; }

    /// <summary>Ids that end a sequence. Null (default) uses the model's: <c>generation_config.json</c>'s <c>eos_token_id</c> and the tokenizer's end
    /// tokens.</summary>
    public IReadOnlyList<int>? EosTokenIds { get; set; }

    /// <summary>Id fed for the left padding of shorter prompts and after a row has finished (never attended to). Default 0.</summary>
    public int PadTokenId { get; set; }

    /// <summary>Throws when a value is out of range; the message names the option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public void Validate()
    {
        if (MaxNewTokens <= 0) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "MaxNewTokens must be positive.");
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature,
            "Temperature must be finite and >= 0 (0 = greedy).");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "TopK must be >= 0 (0 = off).");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1] (1 = off).");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "MinP must be in [0, 1] (0 = off).");
        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty)) throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty),
            RepetitionPenalty, "RepetitionPenalty must be finite and > 0 (1 = off).");
        if (PadTokenId < 0) throw new ArgumentOutOfRangeException(nameof(PadTokenId), PadTokenId, "PadTokenId must be >= 0.");
        if (EosTokenIds?.Any(id => id < 0) == true) throw new ArgumentOutOfRangeException(nameof(EosTokenIds), string.Join(", ", EosTokenIds),
            "EosTokenIds must be >= 0.");
    }

    /// <summary>Whether tokens are drawn (temperature above 0) rather than picked by argmax.</summary>
    public bool DoSample => Temperature > 0;
}
