using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// The tokenizer's files as bytes (<c>tokenizer.json</c> or <c>vocab.json</c> + <c>merges.txt</c>, and
/// <c>tokenizer_config.json</c> when present), so a saved model or an exported checkpoint carries exactly the tokenizer
/// it was trained with.
/// </summary>
internal sealed class TokenizerSource
{
    /// <summary>The files a Qwen3 tokenizer folder may hold, in the order they are looked for.</summary>
    public static readonly string[] FileNames = { "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json" };

    private TokenizerSource(IReadOnlyDictionary<string, byte[]> files)
    {
        Files = files;
    }

    /// <summary>File name to content.</summary>
    public IReadOnlyDictionary<string, byte[]> Files { get; }

    /// <summary>Whether <paramref name="folder"/> holds a tokenizer (tokenizer.json, or vocab.json + merges.txt).</summary>
    public static bool Exists(string folder) =>
        File.Exists(Path.Combine(folder, "tokenizer.json"))
            || (File.Exists(Path.Combine(folder, "vocab.json")) && File.Exists(Path.Combine(folder, "merges.txt")));

    /// <summary>Reads the tokenizer files of <paramref name="folder"/> and builds the tokenizer from that folder.</summary>
    /// <exception cref="FileNotFoundException">No tokenizer files in the folder.</exception>
    public static (TokenizerSource Source, Qwen3Tokenizer Tokenizer) Load(string folder)
    {
        var tokenizer = Qwen3Tokenizer.FromFolder(folder);
        var files = FileNames.Where(n => File.Exists(Path.Combine(folder, n)))
            .ToDictionary(n => n, n => Safetensors.RegularFile.ReadAllBytes(Path.Combine(folder, n), TokenizerFiles.MaxFileBytes));
        return (new TokenizerSource(files), tokenizer);
    }
}
