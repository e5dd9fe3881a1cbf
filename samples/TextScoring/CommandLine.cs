namespace TextScoring;

/// <summary>The sample's arguments: <c>--model &lt;HF folder or .zip&gt;</c>, <c>--adapter &lt;PEFT folder&gt;</c>, <c>--score &lt;file&gt;</c>, <c>--train &lt;file&gt;</c>, <c>--out &lt;path&gt;</c>.</summary>
internal sealed record CommandLine(string? Model, string? Score, string? Train, string? Out, string? Adapter = null)
{
    public const string Usage = "usage: TextScoring [--model <HF folder or saved .zip>] [--adapter <PEFT LoRA folder>] [--train <text file>] [--score <text file>] [--out <path.zip or folder>]";

    /// <exception cref="ArgumentException">An unknown option or a missing value.</exception>
    public static CommandLine Parse(string[] args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] is not ("--model" or "--adapter" or "--score" or "--train" or "--out")) throw new ArgumentException($"unknown argument '{args[i]}'. {Usage}");
            if (i + 1 >= args.Length) throw new ArgumentException($"{args[i]} needs a value. {Usage}");
            values[args[i]] = args[++i];
        }
        return new CommandLine(values.GetValueOrDefault("--model"), values.GetValueOrDefault("--score"), values.GetValueOrDefault("--train"), values.GetValueOrDefault("--out"), values.GetValueOrDefault("--adapter"));
    }

    public bool IsEmpty => Model is null && Score is null && Train is null;
}
