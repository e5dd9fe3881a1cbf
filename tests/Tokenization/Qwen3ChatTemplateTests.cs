using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>The C# rendering of Qwen3's chat template matches the Jinja rendering of Hugging Face.</summary>
[TestFixture]
public class Qwen3ChatTemplateTests
{
    private static IEnumerable<TestCaseData> Cases() => TokenizerFixtures.ChatCases();

    [TestCaseSource(nameof(Cases))]
    public void RendersReferenceTextAndIds(ChatCase c)
    {
        Qwen3Tokenizer tokenizer = TokenizerFixtures.Tokenizer;
        Assert.That(tokenizer.ChatTemplate.Render(c.Messages, addGenerationPrompt: true, enableThinking: c.EnableThinking), Is.EqualTo(c.Text));
        Assert.That(tokenizer.EncodeChat(c.Messages, enableThinking: c.EnableThinking), Is.EqualTo(c.Ids));
    }

    [Test]
    public void TemplateOfTheFixtureConfigIsRecognised()
    {
        string config = File.ReadAllText(TokenizerFixtures.TokenizerConfig);
        string template = System.Text.Json.JsonDocument.Parse(config).RootElement.GetProperty("chat_template").GetString()!;
        Assert.That(Qwen3ChatTemplate.FromJinja(template), Is.SameAs(Qwen3ChatTemplate.Qwen3));
        Assert.That(Qwen3ChatTemplate.FromJinja(template.Replace("\n", "\r\n")), Is.SameAs(Qwen3ChatTemplate.Qwen3));
    }

    [Test]
    public void OtherTemplatesAreRejectedClearly()
    {
        string llama = "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>{{ m.content }}<|eot_id|>{% endfor %}";
        var e = Assert.Throws<NotSupportedException>(() => Qwen3ChatTemplate.FromJinja(llama));
        Assert.That(e!.Message, Does.Contain("not the Qwen3 template"));
    }

    [Test]
    public void UnsupportedTemplateInTheFolderFailsOnUseNotOnLoad()
    {
        string folder = TempFolder.Create();
        File.Copy(TokenizerFixtures.TokenizerJson, Path.Combine(folder, "tokenizer.json"));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"chat_template": "{{ messages[0].content }}"}""");
        Qwen3Tokenizer tokenizer = Qwen3Tokenizer.FromFolder(folder);
        Assert.That(tokenizer.Encode("Hello world"), Is.EqualTo(new[] { 9707, 1879 }));
        Assert.Throws<NotSupportedException>(() => _ = tokenizer.ChatTemplate);
    }

    [Test]
    public void EarlierAssistantTurnsDropTheirReasoningAndTheLastKeepsIt()
    {
        // As the Jinja template: reasoning is kept only for assistant turns after the last user query.
        ChatMessage[] messages =
        [
            ChatMessage.User("Q1"),
            ChatMessage.Assistant("<think>\nr1\n</think>\n\nA1"),
            ChatMessage.User("Q2"),
            ChatMessage.Assistant("A2", reasoningContent: "\nr2\n"),
        ];
        string text = Qwen3ChatTemplate.Qwen3.Render(messages, addGenerationPrompt: false);
        Assert.That(text, Is.EqualTo(
            "<|im_start|>user\nQ1<|im_end|>\n" +
            "<|im_start|>assistant\nA1<|im_end|>\n" +
            "<|im_start|>user\nQ2<|im_end|>\n" +
            "<|im_start|>assistant\n<think>\nr2\n</think>\n\nA2<|im_end|>\n"));
    }

    [Test]
    public void ToolResponsesShareOneUserTurnAndDoNotCountAsQueries()
    {
        ChatMessage[] messages =
        [
            new("system", "S"),
            ChatMessage.User("Q"),
            ChatMessage.Assistant("calling"),
            new("tool", "r1"),
            new("tool", "r2"),
            ChatMessage.Assistant("done"),
        ];
        Assert.That(Qwen3ChatTemplate.Qwen3.Render(messages, addGenerationPrompt: false), Is.EqualTo(
            "<|im_start|>system\nS<|im_end|>\n" +
            "<|im_start|>user\nQ<|im_end|>\n" +
            "<|im_start|>assistant\ncalling<|im_end|>\n" +
            "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n" +
            "<|im_start|>assistant\n<think>\n\n</think>\n\ndone<|im_end|>\n"));
    }

    [Test]
    public void BadConversationsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => Qwen3ChatTemplate.Qwen3.Render([]));
        var e = Assert.Throws<ArgumentException>(() => Qwen3ChatTemplate.Qwen3.Render([new ChatMessage("developer", "x")]));
        Assert.That(e!.Message, Does.Contain("developer"));
        Assert.Throws<ArgumentException>(() => Qwen3ChatTemplate.Qwen3.Render([new ChatMessage("user", null!)]));
    }
}
