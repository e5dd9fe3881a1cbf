using System.Text.Json;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Generation;

/// <summary>
/// Greedy generation equals Hugging Face transformers 5.17 <c>generate(do_sample=False)</c> token for token on the golden
/// fixtures (float32, CPU; references made by tests/Fixtures/generation/make_refs.py): one prompt, a batch of three
/// prompts of different lengths (left padded), and a repetition penalty. Each step's logits also match HF's within 1e-4.
/// Both decode paths: the scripted layers (<see cref="KernelOptions.ScriptedDecode"/>, the default) and the modules.
/// </summary>
public class GreedyParityTests
{
    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var fixture in new[] { "tiny", "mixed" })
        {
            var json = JsonDocument.Parse(File.ReadAllText(RefPath(fixture, "json"))).RootElement;
            foreach (var c in json.GetProperty("cases").EnumerateArray())
                foreach (bool scripted in new[] { true, false })
                    yield return new TestCaseData(fixture, c.GetProperty("name").GetString(), scripted)
                        .SetArgDisplayNames(fixture, c.GetProperty("name").GetString()!, scripted ? "scripted decode" : "module decode");
        }
    }

    private static string RefPath(string fixture, string ext) =>
        Path.Combine(AppContext.BaseDirectory, "Fixtures", "generation", $"{fixture}.{ext}");

    [TestCaseSource(nameof(Cases))]
    public void GreedyTokensAndStepLogitsMatchHuggingFace(string fixture, string name, bool scripted)
    {
        var c = JsonDocument.Parse(File.ReadAllText(RefPath(fixture, "json"))).RootElement.GetProperty("cases").EnumerateArray()
            .Single(x => x.GetProperty("name").GetString() == name);
        var prompts = c.GetProperty("prompts").EnumerateArray().Select(p => (IReadOnlyList<int>)p.EnumerateArray().Select(x
            => x.GetInt32()).ToArray()).ToArray();
        var expected = c.GetProperty("new_tokens").EnumerateArray().Select(p => p.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
        var options = new GenerationOptions { MaxNewTokens = c.GetProperty("max_new_tokens").GetInt32(), PadTokenId = 0 };
        if (c.GetProperty("options").TryGetProperty("repetition_penalty", out var penalty)) options.RepetitionPenalty = penalty.GetSingle();

        using var scope = NewDisposeScope();
        var folder = Path.Combine(GoldenFixture.BuiltInRoot, fixture, "model");
        using var model = new Qwen3MoeForCausalLM(HuggingFaceConfig.Load(folder), kernels: new KernelOptions { ScriptedDecode = scripted });
        HuggingFaceCheckpoint.LoadWeights(model, folder);
        var generator = new CausalLMGenerator(new[] { model });
        var logits = new List<Tensor>();
        generator.OnLogits = l => logits.Add(l.clone().DetachFromDisposeScope());
        var results = generator.Generate(prompts, options);

        for (int r = 0; r < prompts.Length; r++)
        {
            Assert.That(results[r].TokenIds, Is.EqualTo(expected[r]), $"row {r} (prompt of {prompts[r].Count} tokens)");
            Assert.That(results[r].FinishReason, Is.EqualTo(FinishReason.Length));
            Assert.That(results[r].PromptTokenCount, Is.EqualTo(prompts[r].Count));
        }
        using var file = SafetensorsFile.Open(RefPath(fixture, "safetensors"));
        var reference = file.ReadTensor($"{name}.logits");                               // [steps,B,V]
        Assert.That(logits, Has.Count.EqualTo(reference.shape[0]));
        for (int s = 0; s < logits.Count; s++)
        {
            double diff = (logits[s] - reference[s]).abs().max().item<float>();
            Assert.That(diff, Is.LessThanOrEqualTo(1e-4), $"step {s} logits: max abs diff {diff:E2}");
        }
    }
}
