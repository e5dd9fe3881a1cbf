using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Generation;

/// <summary>The ML.NET generation transformer: a completion column from a prompt column, after Fit and after Model.Load.</summary>
public class Qwen3MoeGenerationTransformerTests
{
    private sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
    }

    private static readonly string[] Prompts = { "The cat sat on the", "Hello", "A dog and a cat", "x", "The dog sat on the log." };

    private static Qwen3MoeGenerationOptions Options() => new() { MaxNewTokens = 6, BatchSize = 2, EosTokenIds = Array.Empty<int>() };

    [Test]
    public void CompletesPromptsAfterFitAndAfterLoad()
    {
        var ml = new MLContext(seed: 1);
        var prompts = ml.Data.LoadFromEnumerable(Prompts.Select(p => new PromptRow { Prompt = p }).ToList());
        using var fitted = ml.Qwen3Moe().FineTune(TestModels.TextOptions(maxSteps: 2)).Fit(TestModels.Texts(ml, TestModels.Corpus));

        var generated = fitted.Generate(Options()).Transform(prompts);
        var completions = generated.GetColumn<string>("Completion").ToArray();
        var expected = fitted.TextGenerator.Generate(Prompts, Options()).Select(c => c.Text).ToArray();
        Assert.That(completions, Is.EqualTo(expected), "batches of 2 (the last one short) give the one-batch completions");
        Assert.That(generated.GetColumn<string>("Prompt").ToArray(), Is.EqualTo(Prompts));
        Assert.That(completions.All(c => c.Length > 0), Is.True);

        var path = Path.Combine(Path.GetTempPath(), $"qwen3moe-generate-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(fitted, TestModels.Texts(ml, "x").Schema, path);
            var fresh = new MLContext(seed: 2);
            fresh.ComponentCatalog.RegisterQwen3Moe();
            using var loaded = (Qwen3MoeTransformer)fresh.Model.Load(path, out _);
            var again = loaded.Generate(Options()).Transform(fresh.Data.LoadFromEnumerable(Prompts.Select(p => new PromptRow { Prompt = p }).ToList()));
            Assert.That(again.GetColumn<string>("Completion").ToArray(), Is.EqualTo(completions));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ChatPromptsAndSchemaErrors()
    {
        var ml = new MLContext(seed: 1);
        using var model = TestModels.RandomTextTransformer(ml);
        var options = Options();
        options.ApplyChatTemplate = true;
        options.SystemPrompt = "Be brief.";
        var data = ml.Data.LoadFromEnumerable(Prompts.Take(2).Select(p => new PromptRow { Prompt = p }).ToList());
        var answers = model.Generate(options).Transform(data).GetColumn<string>("Completion").ToArray();
        var expected = Prompts.Take(2).Select(p => model.TextGenerator.Chat(new[] { Microsoft.ML.Qwen3Moe.Tokenization.ChatMessage.System("Be brief."),
            Microsoft.ML.Qwen3Moe.Tokenization.ChatMessage.User(p) }, false, Options()).Reply.Answer);
        Assert.That(answers, Is.EqualTo(expected));

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate(Options()).Transform(TestModels.Texts(ml, "a")));
        Assert.That(e!.Message, Does.Contain("Could not find prompt column 'Prompt'"));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate(new Qwen3MoeGenerationOptions { BatchSize = 0 }));
    }
}
