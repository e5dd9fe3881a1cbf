using Microsoft.Extensions.AI;
using Microsoft.ML.Qwen3Moe.Tests.Estimator;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Chat;

/// <summary>The IChatClient over a random tiny model: responses, streaming, options, usage, cancellation.</summary>
public class Qwen3MoeChatClientTests
{
    private Qwen3MoeTransformer _model = null!;
    private IChatClient _client = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _model = TestModels.RandomTextTransformer(new MLContext(seed: 1));
        _client = new Qwen3MoeChatClient(_model.TextGenerator) { EnableThinking = false };
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _client.Dispose();
        _model.Dispose();
    }

    private static readonly List<ChatMessage> Conversation = new() { new(ChatRole.System, "Be brief."), new(ChatRole.User, "Name a color.") };

    [Test]
    public async Task StreamingGivesTheSameReplyAndUsageAsTheResponse()
    {
        var options = new ChatOptions { MaxOutputTokens = 10 };
        var response = await _client.GetResponseAsync(Conversation, options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in _client.GetStreamingResponseAsync(Conversation, options)) updates.Add(u);

        var expected = _model.TextGenerator.Chat(new[] { Microsoft.ML.Qwen3Moe.Tokenization.ChatMessage.System("Be brief."),
            Microsoft.ML.Qwen3Moe.Tokenization.ChatMessage.User("Name a color.") },
            enableThinking: false, new TextGenerationOptions { MaxNewTokens = 10 });
        Assert.That(response.Text, Is.EqualTo(expected.Reply.Answer));
        Assert.That(string.Concat(updates.Select(u => u.Text)), Is.EqualTo(response.Text));
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(expected.Completion.PromptTokenCount));
        Assert.That(response.Usage.OutputTokenCount, Is.EqualTo(expected.Completion.TokenIds.Count));
        var usage = updates[^1].Contents.OfType<UsageContent>().Single().Details;
        Assert.That(usage.InputTokenCount, Is.EqualTo(response.Usage.InputTokenCount));
        Assert.That(usage.OutputTokenCount, Is.EqualTo(response.Usage.OutputTokenCount));
        Assert.That(updates[^1].FinishReason, Is.EqualTo(response.FinishReason));
    }

    [Test]
    public async Task MaxOutputTokensSeedAndTemperatureAreHonoured()
    {
        var sampled = new ChatOptions { MaxOutputTokens = 6, Temperature = 1.2f, Seed = 42 };
        var a = await _client.GetResponseAsync(Conversation, sampled);
        var b = await _client.GetResponseAsync(Conversation, sampled);
        Assert.That(a.Usage!.OutputTokenCount, Is.LessThanOrEqualTo(6));
        Assert.That(b.Text, Is.EqualTo(a.Text), "same seed, same reply");
        if (a.Usage.OutputTokenCount == 6) Assert.That(a.FinishReason, Is.EqualTo(ChatFinishReason.Length));
    }

    [Test]
    public async Task CancellationStopsTheStreamBetweenTokens()
    {
        using var cts = new CancellationTokenSource();
        int seen = 0;
        await Assert.CatchAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in _client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 200 }, cts.Token))
                if (++seen == 1) cts.Cancel();
        });
        Assert.That(seen, Is.EqualTo(1));
    }

    [Test]
    public void ItDescribesItself()
    {
        Assert.That(_client.GetService<ChatClientMetadata>()!.DefaultModelId, Is.EqualTo("qwen3-moe"));
        Assert.That(_client.GetService<Qwen3TextGenerator>(), Is.SameAs(_model.TextGenerator));
    }
}
