using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>Locates the tokenizer fixtures and shares one loaded tokenizer between tests (loading takes about a second).</summary>
internal static class TokenizerFixtures
{
    /// <summary>Extra case files (same format as cases.json), separated by ':'.</summary>
    public const string ExtraCasesVariable = "QWEN3MOE_EXTRA_TOKENIZER_CASES";

    private static readonly Lazy<Qwen3Tokenizer> s_tokenizer = new(() => Qwen3Tokenizer.FromFolder(Folder));

    public static string Folder => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "tokenizer");

    public static string TokenizerJson => Path.Combine(Folder, "tokenizer.json");

    public static string TokenizerConfig => Path.Combine(Folder, "tokenizer_config.json");

    public static Qwen3Tokenizer Tokenizer => s_tokenizer.Value;

    /// <summary>The benchmark corpus (bench/data/bench-corpus.txt of the repository), read from the source tree.</summary>
    public static string ReadBenchCorpus() =>
        File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "..", "..", "..", "..", "bench", "data", "bench-corpus.txt"));

    /// <summary>
    /// cases.json, hf-edge-cases.json (Hugging Face's ids for edge cases the fixture lacks: letters and digits outside the
    /// BMP, emoji before letters, added tokens beside combining marks, noncharacters, long runs; generated on the GPU
    /// machine by bench/Tokenizer/hf_extra_cases.py), then every file named by <see cref="ExtraCasesVariable"/>.
    /// </summary>
    public static IEnumerable<TestCaseData> EncodingCases() =>
        CasesFrom(new[] { Path.Combine(Folder, "cases.json"), Path.Combine(Folder, "hf-edge-cases.json") });

    /// <summary>cases.json only.</summary>
    public static IEnumerable<TestCaseData> FixtureCases() => CasesFrom(new[] { Path.Combine(Folder, "cases.json") }, extra: false);

    private static IEnumerable<TestCaseData> CasesFrom(IEnumerable<string> builtIn, bool extra = true)
    {
        var files = builtIn.ToList();
        string? named = extra ? Environment.GetEnvironmentVariable(ExtraCasesVariable) : null;
        if (!string.IsNullOrWhiteSpace(named))
        {
            files.AddRange(named.Split(':', StringSplitOptions.RemoveEmptyEntries));
        }

        foreach (string file in files)
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(file));
            int index = 0;
            foreach (JsonElement c in doc.RootElement.EnumerateArray())
            {
                var data = new EncodingCase(
                    c.GetProperty("text").GetString()!,
                    c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                    c.GetProperty("decoded").GetString()!);
                yield return new TestCaseData(data).SetName($"{Path.GetFileName(file)}[{index++}]");
            }
        }
    }

    /// <summary>chat_template_cases.json.</summary>
    public static IEnumerable<TestCaseData> ChatCases()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "chat_template_cases.json")));
        int index = 0;
        foreach (JsonElement c in doc.RootElement.EnumerateArray())
        {
            var messages = c.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!))
                .ToArray();
            var data = new ChatCase(
                messages,
                c.GetProperty("enable_thinking").GetBoolean(),
                c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
            yield return new TestCaseData(data).SetName($"chat_template_cases.json[{index++}]");
        }
    }
}

/// <summary>One reference encoding from Hugging Face tokenizers.</summary>
public sealed record EncodingCase(string Text, int[] Ids, string Decoded);

/// <summary>One reference chat rendering (with add_generation_prompt).</summary>
public sealed record ChatCase(ChatMessage[] Messages, bool EnableThinking, string Text, int[] Ids);
