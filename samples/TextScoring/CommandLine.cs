namespace TextScoring;

/// <summary>The sample's arguments (see <see cref="Help"/>).</summary>
internal sealed record CommandLine(string? Model, string? Tokenizer, string? Score, string? ScoresOut, string? Train, string? Out, bool ShowHelp,
    string? Adapter = null, bool Lora = false)
{
    public const string Usage = "usage: TextScoring [--model <HF folder or saved .zip>] [--adapter <PEFT folder>] [--tokenizer <folder>] " +
        "[--train <text file> [--lora]] [--score <text file>] [--scores-out <file.jsonl>] [--out <path.zip or folder>] [--help]";

    public const string Help = Usage + """


        With no arguments (or only --out): the demo. A small random Qwen3-MoE with the Qwen3 tokenizer is fine-tuned on the
        bundled corpus, held-out lines are scored before and after, the ML.NET model is saved (to --out, or a new temporary
        folder), reloaded in a fresh MLContext, and its scores compared.

          --model <path>         a Hugging Face model folder (config.json + safetensors) or a .zip saved by mlContext.Model.Save
          --adapter <folder>     a PEFT LoRA adapter folder applied to --model's folder: for --score, and for --train, which
                                 then continues training it (LoRA, frozen base) and --out <folder> writes a PEFT folder
          --lora                 with --model <folder> and --train: train new LoRA adapters (rank 16, alpha 32, attention and
                                 routed experts) on the frozen base instead of all weights; --out <folder> writes a PEFT folder
          --tokenizer <folder>   tokenizer folder (tokenizer.json, or vocab.json + merges.txt) when the model folder has none;
                                 with --train and no --model, replaces the bundled Qwen3 tokenizer of the demo model
          --train <file>         fine-tune on the file's non-empty lines (from --model's folder, or the demo model)
          --score <file>         score the file's non-empty lines and print their token counts and perplexities
          --scores-out <file>    with --score: also write one JSON object per scored line (JSON Lines):
                                 {"text", "token_count", "mean_log_probability", "perplexity"} (null where undefined)
          --out <path>           save the model: a .zip (ML.NET model) or a folder (Hugging Face export)
          --help                 this text

        Errors (a missing file, a broken model) end with one line naming the file and the problem, and exit code 1.
        """;

    private static readonly string[] Options = { "--model", "--adapter", "--tokenizer", "--score", "--scores-out", "--train", "--out" };

    /// <exception cref="ArgumentException">An unknown option or a missing value.</exception>
    public static CommandLine Parse(string[] args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        bool help = false, lora = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] is "--help" or "-h")
            {
                help = true;
                continue;
            }
            if (args[i] == "--lora")
            {
                lora = true;
                continue;
            }
            if (!Options.Contains(args[i])) throw new ArgumentException($"unknown argument '{args[i]}'. {Usage}");
            if (i + 1 >= args.Length) throw new ArgumentException($"{args[i]} needs a value. {Usage}");
            values[args[i]] = args[++i];
        }
        var cl = new CommandLine(values.GetValueOrDefault("--model"), values.GetValueOrDefault("--tokenizer"), values.GetValueOrDefault("--score"),
            values.GetValueOrDefault("--scores-out"), values.GetValueOrDefault("--train"), values.GetValueOrDefault("--out"), help,
                values.GetValueOrDefault("--adapter"), lora);
        if (cl.ScoresOut is not null && cl.Score is null) throw new ArgumentException($"--scores-out needs --score <text file>. {Usage}");
        if (cl.Adapter is not null && cl.Model is null)
            throw new ArgumentException($"--adapter applies to a Hugging Face base folder given with --model. {Usage}");
        if (lora && (cl.Model is null || cl.Train is null))
            throw new ArgumentException($"--lora trains new adapters: it needs --model <Hugging Face folder> and --train <text file>. {Usage}");
        if (cl.Tokenizer is not null && cl.Model is null && cl.Train is null)
            throw new ArgumentException($"--tokenizer goes with --model or --train. {Usage}");
        return cl;
    }

    /// <summary>No model, training or scoring asked for: run the demo (optionally saving to <see cref="Out"/>).</summary>
    public bool IsEmpty => Model is null && Score is null && Train is null;
}
