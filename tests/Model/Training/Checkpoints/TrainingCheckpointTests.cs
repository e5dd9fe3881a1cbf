using System.Text;
using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training.Checkpoints;

/// <summary>One checkpoint folder: damage is detected before anything changes, and a checkpoint of another setup is refused by name.</summary>
public class TrainingCheckpointTests : CheckpointTestBase
{
    private string SaveOne(ScalarType dtype = ScalarType.Float32, int steps = 2)
    {
        var folder = Files.PathOf("ckpt");
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10), dtype);
        t.TrainUntil(steps);
        TrainingCheckpoint.Save(folder, t.Executor, t.Trainer, new DataPosition(1, 5));
        return folder;
    }

    [Test]
    public void FolderHoldsManifestAndSafetensorsOnly()
    {
        var folder = SaveOne();
        Assert.That(Directory.GetFiles(folder).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[] { "manifest.json", "model.safetensors", "trainer_state.safetensors" }));
        Assert.That(Directory.GetDirectories(Files.Root).Select(Path.GetFileName), Is.EqualTo(new[] { "ckpt" }), "no temp folder is left");
        Assert.That(TrainingCheckpoint.Verify(folder), Is.EqualTo(2));
        // The weights file holds exactly the model's parameters, by name.
        using var model = new Qwen3MoeForCausalLM(Qwen3MoeForCausalLMTests.TinyParameters());
        using var file = Microsoft.ML.Qwen3Moe.Safetensors.SafetensorsFile.Open(Path.Combine(folder, "model.safetensors"));
        Assert.That(file.Entries.Keys.Order(), Is.EqualTo(model.UniqueNamedParameters().Select(p => p.Name).Order()));
    }

    [Test]
    public void SavingAgainReplacesTheFolderAtomically()
    {
        var folder = SaveOne(steps: 1);
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10));
        t.TrainUntil(3);
        TrainingCheckpoint.Save(folder, t.Executor, t.Trainer, DataPosition.Start);
        Assert.That(TrainingCheckpoint.Verify(folder), Is.EqualTo(3));
        Assert.That(Directory.GetDirectories(Files.Root).Select(Path.GetFileName), Is.EqualTo(new[] { "ckpt" }));
    }

    [TestCase("manifest.json", "delete", "has no manifest.json")]
    [TestCase("model.safetensors", "delete", "'model.safetensors', listed in manifest.json, is missing")]
    [TestCase("model.safetensors", "truncate", "'model.safetensors' has")]
    [TestCase("trainer_state.safetensors", "truncate", "'trainer_state.safetensors' has")]
    [TestCase("model.safetensors", "flip", "does not match its SHA-256")]
    [TestCase("trainer_state.safetensors", "flip", "does not match its SHA-256")]
    [TestCase("manifest.json", "garbage", "manifest.json: the manifest is not valid JSON")]
    [TestCase("manifest.json", "truncate", "manifest.json")]
    public void DamagedCheckpointIsRefusedAndNothingChanges(string file, string damage, string message)
    {
        var folder = SaveOne();
        var path = Path.Combine(folder, file);
        var bytes = File.ReadAllBytes(path);
        switch (damage)
        {
            case "delete": File.Delete(path); break;
            case "truncate": File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]); break;
            case "flip": bytes[^3] ^= 0x40; File.WriteAllBytes(path, bytes); break;
            case "garbage": File.WriteAllBytes(path, Encoding.UTF8.GetBytes("{\"format\": ")); break;
        }
        var e = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Verify(folder))!;
        Assert.That(e.Message, Does.Contain(message).And.Contain(folder));

        using var t = new TinyTraining(seed: 8, TinyTraining.Options(10));
        var before = t.Model.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter.detach().clone());
        Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Restore(folder, t.Executor, t.Trainer));
        AssertUnchanged(t, before);
        foreach (var c in before.Values) c.Dispose();
    }

    [Test]
    public void CheckpointOfAnotherModelIsRefusedNamingTheTensorAndNothingChanges()
    {
        var folder = SaveOne();
        using var model = new Qwen3MoeForCausalLM(Qwen3MoeForCausalLMTests.TinyParameters(l => l with { MoeIntermediateSize = 24 }));
        model.InitializeWeights(1);
        using var ex = new Microsoft.ML.Qwen3Moe.Execution.SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(ex, TinyTraining.Options(10));
        var before = model.UniqueNamedParameters().ToDictionary(x => x.Name, x => x.Parameter.detach().clone());
        var e = Assert.Throws<ArgumentException>(() => TrainingCheckpoint.Restore(folder, ex, trainer))!;
        Assert.That(e.Message, Does.Contain("mlp.experts").And.Contain("the model needs F32"));
        foreach (var (name, p) in model.UniqueNamedParameters()) TensorAssert.Equal(p, before[name], name);
        Assert.That(trainer.Step, Is.Zero);
        foreach (var c in before.Values) c.Dispose();
    }

    [Test]
    public void CheckpointWithMoreLayersIsRefused()
    {
        var folder = SaveOne();
        using var model = new Qwen3MoeForCausalLM(Qwen3MoeForCausalLMTests.TinyParameters(layers: 1));
        using var ex = new Microsoft.ML.Qwen3Moe.Execution.SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(ex, TinyTraining.Options(10));
        var e = Assert.Throws<ArgumentException>(() => TrainingCheckpoint.Restore(folder, ex, trainer))!;
        Assert.That(e.Message, Does.Contain("trained").Or.Contain("is not part of this model"));
    }

    [Test]
    public void MasterWeightSettingMustMatch()
    {
        var folder = SaveOne(ScalarType.BFloat16);
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10) with { Float32MasterWeights = false }, ScalarType.BFloat16);
        var e = Assert.Throws<ArgumentException>(() => TrainingCheckpoint.Restore(folder, t.Executor, t.Trainer))!;
        Assert.That(e.Message, Does.Contain("master weights"));
    }

    [Test]
    public void TrainedParameterSetMustMatch()
    {
        var folder = SaveOne();
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10) with { Trainable = TrainableParameters.AllButExperts });
        var e = Assert.Throws<ArgumentException>(() => TrainingCheckpoint.Restore(folder, t.Executor, t.Trainer))!;
        Assert.That(e.Message, Does.Contain("first differ").And.Contain("experts"));
    }

    [Test]
    public void NegativeDataPositionIsRefused()
    {
        using var t = new TinyTraining(seed: 3, TinyTraining.Options(10));
        Assert.Throws<ArgumentOutOfRangeException>(() => TrainingCheckpoint.Save(Files.PathOf("x"), t.Executor, t.Trainer, new DataPosition(0, -1)));
        Assert.That(Directory.GetFileSystemEntries(Files.Root), Is.Empty);
    }

    private static void AssertUnchanged(TinyTraining t, Dictionary<string, Tensor> before)
    {
        foreach (var (name, p) in t.Model.UniqueNamedParameters()) TensorAssert.Equal(p, before[name], name);
        Assert.That(t.Trainer.Step, Is.Zero);
    }
}
