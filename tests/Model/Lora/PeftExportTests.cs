using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Lora;
using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Lora;

/// <summary>
/// An adapter trained and saved by us (golden <c>mixed</c> model, attention + experts + router, 3 AdamW steps) reloads with
/// the same logits, and its merged export scores the same. With <c>QWEN3MOE_PEFT_CHECK_OUT</c> set, the adapter, the
/// merged HF folder and our logits are also written there for <c>tests/Scripts/peft_check.py</c>, which loads them with
/// PEFT 0.21 / transformers 5.17 (run on the GPU machine: see README, LoRA).
/// </summary>
public class PeftExportTests : CheckpointTestBase
{
    [Test]
    public void TrainedAdapterRoundTripsAndMergesToTheSameLogits()
    {
        using var scope = NewDisposeScope();
        var baseFolder = GoldenFixture.Mixed.ModelFolder;
        var ids = GoldenFixture.Mixed.Expected("input_ids");
        using var model = HuggingFaceCheckpoint.Load(baseFolder);
        LoraAdapters.Attach(model, new LoraOptions { Rank = 4, Alpha = 8, Targets = LoraTargets.Attention | LoraTargets.Experts | LoraTargets.Router,
            Seed = 3 });
        using (var executor = new SingleStageExecutor(model))
        using (var trainer = new CausalLMTrainer(executor, new TrainingOptions { TotalSteps = 3, LearningRate = 2e-2, IncludeAuxiliaryLoss = false }))
            for (int i = 0; i < 3; i++) trainer.TrainStep(new[] { new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) } });
        model.eval();
        Tensor Logits(Qwen3MoeForCausalLM m)
        {
            using var _ = no_grad();
            using var o = m.forward(new CausalLMBatch { InputIds = ids, ReturnLogits = true });
            return o.Logits!.detach().clone();
        }
        var ours = Logits(model);
        using (var plain = HuggingFaceCheckpoint.Load(baseFolder))
            Assert.That(TensorAssert.MaxAbsDiff(Logits(plain), ours), Is.GreaterThan(0.05), "training moved the logits");

        var adapter = Files.PathOf("adapter");
        PeftAdapter.Save(new[] { model }, adapter, "golden/mixed/model");
        using (var reloaded = HuggingFaceCheckpoint.Load(baseFolder))
        {
            PeftAdapter.Load(new[] { reloaded }, adapter);
            TensorAssert.Equal(Logits(reloaded), ours, "logits after save and load");
        }
        model.Lora!.MergeIntoBase();
        var merged = Files.PathOf("merged");
        HuggingFaceCheckpoint.Save(model, merged);
        using (var reloaded = HuggingFaceCheckpoint.Load(merged)) TensorAssert.Close(Logits(reloaded), ours, 1e-4, "merged export");

        if (Environment.GetEnvironmentVariable("QWEN3MOE_PEFT_CHECK_OUT") is { Length: > 0 } outDir)
        {
            Directory.CreateDirectory(outDir);
            foreach (var f in Directory.GetFiles(adapter)) File.Copy(f, Path.Combine(outDir, Path.GetFileName(f)), overwrite: true);
            var mergedOut = Path.Combine(outDir, "merged");
            Directory.CreateDirectory(mergedOut);
            foreach (var f in Directory.GetFiles(merged)) File.Copy(f, Path.Combine(mergedOut, Path.GetFileName(f)), overwrite: true);
            SafetensorsWriter.Write(Path.Combine(outDir, "ours.safetensors"), new[] { KeyValuePair.Create("logits", ours), KeyValuePair.Create("input_ids",
                ids) });
        }
    }
}
