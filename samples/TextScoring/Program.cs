using TextScoring;

// TextScoring: with no arguments, the whole demo (random Qwen3-MoE + real tokenizer, fine-tune, score, save, reload).
// With arguments: see --help (CommandLine.Help).
try
{
    var commandLine = CommandLine.Parse(args);
    if (commandLine.ShowHelp)
    {
        Console.WriteLine(CommandLine.Help);
        return 0;
    }
    return commandLine.IsEmpty ? DefaultDemo.Run(commandLine.Out) : ArgumentsMode.Run(commandLine);
}
catch (Exception e) when (e is UserError or ArgumentException or IOException or FormatException or InvalidDataException
                          or InvalidOperationException or NotSupportedException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"error: {e.Message.ReplaceLineEndings(" ")}");
    return 1;
}
