using System.Globalization;

namespace TextScoring;

/// <summary>
/// The generation arguments (kept apart from <see cref="CommandLine"/>): <c>--generate &lt;prompts file&gt;</c> (one prompt
/// per line) or <c>--chat</c>, with <c>--model</c>, <c>--max-new-tokens N</c> (default 64), <c>--temperature T</c>
/// (default 0: greedy), <c>--top-p P</c>, <c>--seed N</c>, <c>--completions-out &lt;file.jsonl&gt;</c>, <c>--thinking on|off</c>
/// (chat, default on).
/// </summary>
internal sealed record GenerationCommandLine(string? Model, string? Generate, bool Chat, int MaxNewTokens, float Temperature, float TopP, long? Seed,
    string? CompletionsOut, bool Thinking)
{
    public const string Usage = "usage: TextScoring [--model <HF folder or saved .zip>] " +
        "(--generate <prompts file> [--completions-out <file.jsonl>] | --chat [--thinking on|off]) " +
        "[--max-new-tokens N] [--temperature T] [--top-p P] [--seed N]";

    public const string Help = """
        Generation:
          --generate <file>         complete each non-empty line of the file (batched) and print the completions
          --completions-out <file>  with --generate: also write one JSON object per prompt: {"prompt", "completion", "token_ids"}
          --chat                    interactive streaming chat in the terminal (an empty line quits)
          --thinking on|off         with --chat: let the model reason first (default on; shown dimmed)
          --max-new-tokens N        most new tokens per completion (default 64)
          --temperature T           0 (default) is greedy; above 0 samples
          --top-p P                 nucleus sampling (default 1: off)
          --seed N                  seed of the sampling generator (same seed, same output)
        Without --model, the random demo model generates (noise, but every step runs).
        """;

    private static readonly string[] Flags = { "--model", "--generate", "--max-new-tokens", "--temperature", "--top-p", "--seed", "--completions-out",
        "--thinking" };

    /// <summary>Whether <paramref name="args"/> ask for generation (<c>--generate</c> or <c>--chat</c>).</summary>
    public static bool Applies(string[] args) => args.Contains("--generate") || args.Contains("--chat");

    /// <exception cref="ArgumentException">An unknown option, a missing or malformed value, or both modes.</exception>
    public static GenerationCommandLine Parse(string[] args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        bool chat = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--chat") { chat = true; continue; }
            if (!Flags.Contains(args[i])) throw new ArgumentException($"unknown argument '{args[i]}' for generation. {Usage}");
            if (i + 1 >= args.Length) throw new ArgumentException($"{args[i]} needs a value. {Usage}");
            values[args[i]] = args[++i];
        }
        if (chat && values.ContainsKey("--generate")) throw new ArgumentException($"--generate and --chat are two modes: give one. {Usage}");
        if (chat && values.ContainsKey("--completions-out")) throw new ArgumentException($"--completions-out goes with --generate. {Usage}");
        string thinking = values.GetValueOrDefault("--thinking", "on");
        if (thinking is not ("on" or "off")) throw new ArgumentException($"--thinking takes on or off, not '{thinking}'.");
        return new GenerationCommandLine(
            values.GetValueOrDefault("--model"), values.GetValueOrDefault("--generate"), chat,
            Number(values, "--max-new-tokens", 64, int.Parse), Number(values, "--temperature", 0f, float.Parse), Number(values, "--top-p", 1f, float.Parse),
            values.ContainsKey("--seed") ? Number(values, "--seed", 0L, long.Parse) : null,
            values.GetValueOrDefault("--completions-out"), thinking == "on");
    }

    private static T Number<T>(Dictionary<string, string> values, string flag, T fallback, Func<string, IFormatProvider, T> parse)
    {
        if (!values.TryGetValue(flag, out var text)) return fallback;
        try
        {
            return parse(text, CultureInfo.InvariantCulture);
        }
        catch (FormatException)
        {
            throw new ArgumentException($"{flag} needs a number, not '{text}'.");
        }
    }
}
