using Microsoft.ML.Qwen3Moe.Generation;

namespace Microsoft.ML.Qwen3Moe;

/// <summary><see cref="GenerationOptions"/> plus what needs the tokenizer: stop sequences.</summary>
public class TextGenerationOptions : GenerationOptions
{
    /// <summary>
    /// Texts that end a completion when they appear in the generated text; the completion is cut before the first one
    /// (the stop text is not returned, its tokens are in the ids). Empty by default.
    /// </summary>
    public IList<string> StopSequences { get; set; } = new List<string>();

    /// <summary>Throws when a value is out of range; the message names the option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="ArgumentException">An empty or null stop sequence.</exception>
    public new void Validate()
    {
        base.Validate();
        if (StopSequences is null) throw new ArgumentException("StopSequences must not be null (use an empty list).", nameof(StopSequences));
        if (StopSequences.Any(string.IsNullOrEmpty)) throw new ArgumentException("StopSequences holds an empty or null text.", nameof(StopSequences));
    }

    internal TextGenerationOptions CloneWith(IReadOnlyList<int>? eosTokenIds) => new()
    {
        MaxNewTokens = MaxNewTokens, Temperature = Temperature, TopK = TopK, TopP = TopP, MinP = MinP,
        RepetitionPenalty = RepetitionPenalty, Seed = Seed, EosTokenIds = EosTokenIds ?? eosTokenIds, PadTokenId = PadTokenId,
        StopSequences = StopSequences.ToList(),
    };
}
