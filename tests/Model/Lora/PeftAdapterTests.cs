using System.Text.Json;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Lora;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Lora;

/// <summary>
/// Interchange with Hugging Face PEFT 0.21 on transformers 5.17, against adapters PEFT made (tests/Scripts/peft_fixtures.py,
/// float32 CPU, golden <c>mixed</c> model: attention + routed experts + dense layer; random non-zero A and B; one fixture
/// with rsLoRA, PEFT's doubled gate_up_proj rank pattern and a fully trained router). Tolerances: 1e-4 max abs on logits
/// (fp32, different reduction orders, as the base parity tests); 1e-4 relative on the 8-step AdamW losses.
/// </summary>
[TestFixture, Category("Parity")]
public class PeftAdapterTests
{
    private static readonly string[] Names = { "mixed_all_rslora", "mixed_dense_regex" };

    private static string Folder(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "peft", name);

    private static Tensor Expected(string name, string key)
    {
        using var f = SafetensorsFile.Open(Path.Combine(Folder(name), "expected.safetensors"));
        return f.ReadTensor(key);
    }

    private static Qwen3MoeForCausalLM LoadWithAdapter(string name)
    {
        var model = HuggingFaceCheckpoint.Load(GoldenFixture.Mixed.ModelFolder);
        PeftAdapter.Load(new[] { model }, Folder(name));
        return model;
    }

    [TestCaseSource(nameof(Names))]
    public void PeftAdapterGivesPeftLogits(string name)
    {
        using var scope = NewDisposeScope();
        using var model = LoadWithAdapter(name);
        model.eval();
        using var _ = no_grad();
        var ids = GoldenFixture.Mixed.Expected("input_ids");
        using var o = model.forward(new CausalLMBatch { InputIds = ids, ReturnLogits = true });
        var peft = Expected(name, "logits");
        Assert.That(TensorAssert.MaxAbsDiff(Expected(name, "base_logits"), peft), Is.GreaterThan(0.05),
            "the adapter changes the logits (else the check proves nothing)");
        TensorAssert.Close(o.Logits!, peft, 1e-4, $"{name} logits");
    }

    /// <summary>Our trainer (constant LR, no aux loss, clip 1.0) on PEFT's adapter follows PEFT + torch AdamW; the trained factors match too.</summary>
    [TestCaseSource(nameof(Names))]
    public void AdamWTrajectoryMatchesPeft(string name)
    {
        using var scope = NewDisposeScope();
        using var model = LoadWithAdapter(name);
        var ids = GoldenFixture.Mixed.Expected("input_ids");
        var expected = Expected(name, "adamw_loss_trajectory").data<float>().ToArray();
        var options = new TrainingOptions
        {
            LearningRate = 1e-3, Beta1 = 0.9, Beta2 = 0.95, Epsilon = 1e-8, WeightDecay = 0.1, ClipGradientNorm = 1.0,
            Schedule = LearningRateScheduleKind.Constant, TotalSteps = expected.Length, IncludeAuxiliaryLoss = false,
        };
        using var executor = new SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(executor, options);
        Assert.That(trainer.TrainedParameterNames, Is.EquivalentTo(model.Lora!.TrainableNames));
        var batch = new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };
        for (int step = 0; step < expected.Length; step++)
        {
            var r = trainer.TrainStep(new[] { batch });
            TensorAssert.RelativelyClose(r.Loss, expected[step], 1e-4, $"loss before AdamW step {step}");
        }
        var saved = Path.Combine(Path.GetTempPath(), "peft-" + Guid.NewGuid().ToString("N"));
        try
        {
            PeftAdapter.Save(new[] { model }, saved);
            using var ours = SafetensorsFile.Open(Path.Combine(saved, PeftAdapter.WeightsFileName));
            using var theirs = SafetensorsFile.Open(Path.Combine(Folder(name), "expected.safetensors"));
            var trainedKeys = theirs.Entries.Keys.Where(k => k.StartsWith("trained.", StringComparison.Ordinal)).ToList();
            Assert.That(ours.Entries.Keys, Is.EquivalentTo(trainedKeys.Select(k => k["trained.".Length..])));
            foreach (var k in trainedKeys)
                TensorAssert.Close(ours.ReadTensor(k["trained.".Length..]), theirs.ReadTensor(k), 1e-4, $"trained {k}");
        }
        finally
        {
            Directory.Delete(saved, recursive: true);
        }
    }

    /// <summary>Saving what we loaded writes PEFT's file back: same keys, shapes, values and config fields.</summary>
    [TestCaseSource(nameof(Names))]
    public void SaveWritesWhatPeftWrites(string name)
    {
        using var scope = NewDisposeScope();
        using var model = LoadWithAdapter(name);
        var saved = Path.Combine(Path.GetTempPath(), "peft-" + Guid.NewGuid().ToString("N"));
        try
        {
            PeftAdapter.Save(new[] { model }, saved, "golden/mixed/model");
            using (var ours = SafetensorsFile.Open(Path.Combine(saved, PeftAdapter.WeightsFileName)))
            using (var theirs = SafetensorsFile.Open(Path.Combine(Folder(name), PeftAdapter.WeightsFileName)))
            {
                Assert.That(ours.Entries.Keys, Is.EquivalentTo(theirs.Entries.Keys));
                Assert.That(ours.Metadata, Is.EquivalentTo(theirs.Metadata));
                foreach (var k in theirs.Entries.Keys)
                {
                    Assert.That(ours.Entries[k].Shape, Is.EqualTo(theirs.Entries[k].Shape), k);
                    Assert.That(ours.Entries[k].DType, Is.EqualTo(theirs.Entries[k].DType), k);
                    TensorAssert.Equal(ours.ReadTensor(k), theirs.ReadTensor(k), k);
                }
            }
            using var mine = JsonDocument.Parse(File.ReadAllText(Path.Combine(saved, PeftAdapter.ConfigFileName)));
            using var peft = JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder(name), PeftAdapter.ConfigFileName)));
            var a = mine.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value);
            var b = peft.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value);
            Assert.That(a.Keys, Is.EqualTo(b.Keys), "PEFT's key set, sorted");
            foreach (var (k, v) in b)
            {
                if (k is "target_modules" or "target_parameters" or "modules_to_save")
                {
                    // sets: PEFT writes them in set order; the targets' meaning must agree (PEFT's list may name the same target twice)
                    static IEnumerable<string> Leaves(JsonElement e) => e.ValueKind == JsonValueKind.Null ? Array.Empty<string>()
                        : e.EnumerateArray().Select(x => x.GetString()!.Split('.').Last()).Distinct();
                    Assert.That(Leaves(a[k]), Is.EquivalentTo(Leaves(v)), k);
                }
                else if (k == "lora_dropout") Assert.That(a[k].GetDouble(), Is.EqualTo(v.GetDouble()), k);
                else Assert.That(a[k].GetRawText().Replace(" ", "").Replace("\n", ""), Is.EqualTo(v.GetRawText().Replace(" ", "").Replace("\n", "")), k);
            }
        }
        finally
        {
            Directory.Delete(saved, recursive: true);
        }
    }
}
