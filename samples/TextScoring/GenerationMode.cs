using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Qwen3Moe;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace TextScoring;

/// <summary>
/// <c>--generate</c>: completes each line of a file (batched) and prints it, optionally writing JSON lines
/// (<c>prompt</c>, <c>completion</c>, <c>token_ids</c>); <c>--chat</c>: an interactive streaming chat in the terminal
/// (reasoning shown dimmed; an empty line or end of input quits). Without <c>--model</c>, the built-in random demo model
/// (its text is noise, but every step runs).
/// </summary>
internal static class GenerationMode
{
    private static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static int Run(GenerationCommandLine cl)
    {
        var mlContext = new MLContext(seed: 1);
        ConsoleLog.Attach(mlContext);
        using var model = Load(mlContext, cl.Model);
        var options = new TextGenerationOptions { MaxNewTokens = cl.MaxNewTokens, Temperature = cl.Temperature, TopP = cl.TopP, Seed = cl.Seed };
        options.Validate();
        if (cl.Chat) Chat(model.TextGenerator, options, cl.Thinking);
        else Generate(model.TextGenerator, options, cl.Generate!, cl.CompletionsOut);
        return 0;
    }

    private static void Generate(Qwen3TextGenerator generator, TextGenerationOptions options, string file, string? jsonl)
    {
        if (!File.Exists(file)) throw new UserError($"{file}: no such file.");
        var prompts = File.ReadAllLines(file).Where(l => l.Length > 0).ToArray();
        if (prompts.Length == 0) throw new UserError($"{file}: no prompts (one per line).");
        var completions = new List<TextCompletion>();
        foreach (var batch in prompts.Chunk(8)) completions.AddRange(generator.Generate(batch, options));
        for (int i = 0; i < prompts.Length; i++)
            Console.WriteLine($"> {prompts[i]}\n{completions[i].Text}\n[{completions[i].TokenIds.Count} tokens, {completions[i].FinishReason}]\n");
        if (jsonl is null) return;
        var temp = jsonl + ".tmp";
        using (var writer = new StreamWriter(temp))
            for (int i = 0; i < prompts.Length; i++)
                writer.WriteLine(JsonSerializer.Serialize(new { prompt = prompts[i], completion = completions[i].Text, token_ids = completions[i].TokenIds },
                    Json));
        File.Move(temp, jsonl, overwrite: true);
        Console.WriteLine($"Wrote {prompts.Length} completions: {jsonl}");
    }

    private static void Chat(Qwen3TextGenerator generator, TextGenerationOptions options, bool thinking)
    {
        var history = new List<ChatMessage>();
        Console.WriteLine($"Chat (thinking {(thinking ? "on" : "off")}); an empty line quits.");
        while (true)
        {
            Console.Write("you> ");
            var line = Console.ReadLine();
            if (string.IsNullOrWhiteSpace(line)) return;
            history.Add(ChatMessage.User(line));
            Console.Write("assistant> ");
            var reasoning = new System.Text.StringBuilder();
            var answer = new System.Text.StringBuilder();
            foreach (var d in generator.StreamChat(history, thinking, options))
            {
                if (d.IsReasoning)
                {
                    reasoning.Append(d.Text);
                    Console.Write($"\u001b[2m{d.Text}\u001b[0m");
                }
                else
                {
                    answer.Append(d.Text);
                    Console.Write(d.Text);
                }
                if (d.FinishReason is { } reason) Console.WriteLine($"\n[{d.TokenCount} tokens, {reason}]");
            }
            history.Add(new Qwen3ChatReply(reasoning.ToString().Trim('\n'), answer.ToString()).ToMessage());
        }
    }

    private static Qwen3MoeTransformer Load(MLContext mlContext, string? path)
    {
        if (path is null) return mlContext.Qwen3Moe().CreateRandom(DemoModel.Parameters, DemoModel.TokenizerFolder);
        if (Directory.Exists(path)) return mlContext.Qwen3Moe().LoadHuggingFace(path);
        if (!File.Exists(path)) throw new UserError($"{path}: no such file or folder.");
        mlContext.ComponentCatalog.RegisterQwen3Moe();
        var loaded = mlContext.Model.Load(path, out _);
        return loaded as Qwen3MoeTransformer
            ?? throw new UserError($"{path}: generation needs a Qwen3-MoE model zip, not a chain of transforms ({loaded.GetType().Name}).");
    }
}
