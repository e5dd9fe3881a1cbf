using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe.Runtime;

/// <summary>
/// Refuses a tokenizer whose ids go beyond the model's vocabulary when the model is loaded or a fit starts, naming both
/// files and both sizes, instead of an "id outside the vocabulary" error at the first forward.
/// </summary>
internal static class VocabularyCheck
{
    /// <summary>Throws unless every id of <paramref name="tokenizer"/> is a row of the model's embedding table.</summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="tokenizerFolder">Folder the tokenizer was read from.</param>
    /// <param name="parameters">The model's architecture.</param>
    /// <param name="modelFolder">Hugging Face folder of the model, or null for a new model (<c>NewModel</c>).</param>
    /// <exception cref="InvalidDataException">The tokenizer has more ids than the model's vocabulary.</exception>
    public static void Ensure(Qwen3Tokenizer tokenizer, string tokenizerFolder, Qwen3MoeForCausalLMParameters parameters, string? modelFolder)
    {
        int vocab = parameters.Model.VocabSize;
        if (tokenizer.VocabularySize <= vocab) return;
        string tokenizerFile = Path.Combine(tokenizerFolder, File.Exists(Path.Combine(tokenizerFolder, "tokenizer.json")) ? "tokenizer.json" : "vocab.json");
        string model = modelFolder is null ? "the new model (NewModel)" : $"the model '{Path.Combine(modelFolder, "config.json")}'";
        throw new InvalidDataException(
            $"The tokenizer '{tokenizerFile}' and {model} don't belong together: the tokenizer has {tokenizer.VocabularySize:N0} token ids " +
            $"(0 to {tokenizer.VocabularySize - 1}), the model's vocabulary (vocab_size) has {vocab:N0}, so ids from {vocab} on have no embedding. " +
            "Use the tokenizer the model was trained with (TokenizerPath / the tokenizer folder), or a model whose vocab_size covers this tokenizer.");
    }

}
