using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Lora;
using Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using static TorchSharp.torch;
using F = Microsoft.ML.Qwen3Moe.Tests.Model.Execution.PipelineFixtures;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Lora;

public class LoraAdaptersTests : CheckpointTestBase
{
    private static readonly LoraOptions All = new() { Rank = 3, Alpha = 5,
        Targets = LoraTargets.Attention | LoraTargets.Experts | LoraTargets.DenseMlp | LoraTargets.Router, Seed = 4 };

    /// <summary>Fills every B factor with N(0, 0.3) from a generator keyed by the factor's name (so the update is non-zero and stage splits agree).</summary>
    internal static void RandomizeB(Qwen3MoeForCausalLM stage)
    {
        using var _ = no_grad();
        foreach (var (name, p) in stage.named_parameters().Where(np => stage.Lora!.IsAdapterParameter(np.name) && np.name.Contains("lora_B")))
        {
            using var g = new Generator((ulong)name.GetHashCode(StringComparison.Ordinal) & 0xffffff);
            p.copy_(normal(0, 0.3, p.shape, generator: g).to(p.dtype));
        }
    }

    private static Tensor Nll(Qwen3MoeForCausalLM m, CausalLMBatch b)
    {
        using var _ = no_grad();
        using var o = m.forward(b);
        return o.TokenNll!.detach().clone();
    }

    [Test]
    public void FreshAdaptersLeaveTheModelUnchanged()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 4, sparseStep: 2);
        using var plain = F.Whole(p);
        using var adapted = F.Whole(p);
        var lora = LoraAdapters.Attach(adapted, All);
        var batch = F.Batch(2);
        using (no_grad())
        using (var a = adapted.forward(batch with { ReturnLogits = true }))
        using (var b = plain.forward(batch with { ReturnLogits = true }))
            TensorAssert.Equal(a.Logits!, b.Logits!, "logits at step 0 (B = 0)");
        var factors = adapted.named_parameters().Where(np => lora.IsAdapterParameter(np.name)).ToList();
        Assert.That(lora.Linear.Count, Is.EqualTo(4 * 4 + 2 * 3), "q/k/v/o on every layer, gate/up/down on the two dense layers");
        Assert.That(lora.Experts.Count, Is.EqualTo(2), "experts of the two sparse layers");
        Assert.That(lora.FullyTrained.Keys, Is.EquivalentTo(new[] { "model.layers.1.mlp.gate.weight", "model.layers.3.mlp.gate.weight" }));
        foreach (var (name, f) in factors)
        {
            if (name.Contains("lora_B")) Assert.That(f.abs().max().item<float>(), Is.EqualTo(0f), $"{name}: B starts at zero");
            else
            {
                double bound = 1 / Math.Sqrt(f.shape[^1]);
                Assert.That(f.abs().max().item<float>(), Is.LessThanOrEqualTo(bound).And.GreaterThan(bound / 2), $"{name}: A ~ U(±1/√in)");
            }
        }
        Assert.That(adapted.named_parameters().Where(np => np.parameter.requires_grad).Select(np => np.name), Is.EquivalentTo(lora.TrainableNames),
            "only adapters and fully trained modules need gradients");
        Assert.That(adapted.named_parameters().Select(np => np.name), Has.Some.EqualTo("model.layers.0.self_attn.q_proj.lora_A.weight"),
            "PEFT's names for linear adapters");
    }

    [Test]
    public void TrainingUpdatesOnlyTheAdapters()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 2);
        using var model = F.Whole(p);
        var before = model.named_parameters().ToDictionary(np => np.name, np => np.parameter.detach().clone());
        var lora = LoraAdapters.Attach(model, LoraOptions.Default());
        using var executor = new SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(executor, new TrainingOptions { TotalSteps = 2, LearningRate = 1e-2 });
        Assert.That(trainer.TrainedParameterNames, Is.EquivalentTo(lora.TrainableNames));
        Assert.That(OptimizerSlot.Of(trainer), Has.Count.EqualTo(lora.TrainableNames.Count), "optimizer state for the adapters only");
        trainer.TrainStep(new[] { F.Batch(2) });
        trainer.TrainStep(new[] { F.Batch(2, seed: 5) });
        foreach (var (name, prm) in model.named_parameters())
        {
            if (lora.IsAdapterParameter(name))
            {
                if (!before.ContainsKey(name) && name.Contains("lora_B")) Assert.That(prm.abs().max().item<float>(), Is.GreaterThan(0f), $"{name} trained");
                continue;
            }
            Assert.That(prm.grad, Is.Null, $"{name}: frozen, no gradient buffer");
            TensorAssert.Equal(prm, before[name], $"{name}: frozen");
        }
        Assert.Throws<ArgumentException>(() => new CausalLMTrainer(executor, new TrainingOptions { TotalSteps = 1,
            Trainable = TrainableParameters.AllButExperts }));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void CheckpointingAndPipelineStagesGiveTheSameGradients(bool pipeline)
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 4, sparseStep: 2);
        var batch = F.Batch(4, seq: 7);
        using var whole = F.Whole(p);
        LoraAdapters.Attach(whole, All);
        RandomizeB(whole);
        double aux = pipeline ? 0 : 0.01; // the load-balancing loss of two micro-batches is not that of the whole batch
        var expected = new SingleStageExecutor(whole).ForwardBackward(batch, F.Targets(batch), aux);
        using var counts = whole.MoeTokensPerExpert;
        var stages = pipeline ? F.Stages(p, 2) : new[] { F.Whole(p) };
        foreach (var s in stages)
        {
            s.EnableCheckpointing = true;
            LoraAdapters.Attach(s, All);
            RandomizeB(s);
        }
        IStepExecutor executor = pipeline ? new PipelineExecutor(stages, PipelineScheduleKind.OneForwardOneBackward, 2) : new SingleStageExecutor(stages[0]);
        var actual = executor.ForwardBackward(batch, F.Targets(batch), aux);
        TensorAssert.RelativelyClose(actual.NllSum.item<float>(), expected.NllSum.item<float>(), 1e-6, "Σ NLL");
        F.AssertSameGradients(stages, whole, 1e-5, pipeline ? "pipelined, checkpointed LoRA" : "checkpointed LoRA");
        Assert.That(whole.named_parameters().Where(np => whole.Lora!.IsAdapterParameter(np.name)).All(np => np.parameter.grad is not null),
            "every factor gets a gradient");
        using var actualCounts = cat(stages.Select(s => s.MoeTokensPerExpert).ToArray());
        TensorAssert.Equal(actualCounts, counts, "MoE statistics counted once per token");
        foreach (var s in stages) s.Dispose();
    }

    [Test]
    public void MergedModelScoresTheSameAndRestoresExactly()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 4, sparseStep: 2);
        using var model = F.Whole(p);
        var baseFolder = Files.PathOf("base");
        HuggingFaceCheckpoint.Save(model, baseFolder);
        var original = model.named_parameters().ToDictionary(np => np.name, np => np.parameter.detach().clone());
        var lora = LoraAdapters.Attach(model, All);
        RandomizeB(model);
        var batch = F.Batch(3);
        var unmerged = Nll(model, batch);
        using (var plain = F.Whole(p)) Assert.That(TensorAssert.MaxAbsDiff(Nll(plain, batch), unmerged), Is.GreaterThan(1e-3),
            "the adapters change the scores");

        Assert.Throws<InvalidOperationException>(() => HuggingFaceCheckpoint.Save(model, Files.PathOf("refused")),
            "unmerged adapters are not silently dropped from an export");
        lora.MergeIntoBase();
        TensorAssert.Close(Nll(model, batch), unmerged, 1e-5, "merged scores");
        var merged = Files.PathOf("merged");
        HuggingFaceCheckpoint.Save(model, merged);
        using (var reloaded = HuggingFaceCheckpoint.Load(merged)) TensorAssert.Close(Nll(reloaded, batch), unmerged, 1e-5, "exported merged model's scores");

        lora.RestoreBase(baseFolder);
        foreach (var (name, prm) in model.named_parameters().Where(np => original.ContainsKey(np.name) && !lora.TrainableNames.Contains(np.name)))
            TensorAssert.Equal(prm, original[name], $"{name} restored exactly");
        TensorAssert.Equal(Nll(model, batch), unmerged, "scores after the restore");
    }

    [Test]
    public void Bfloat16BaseWithFloat32Adapters()
    {
        using var scope = NewDisposeScope();
        var p = F.Parameters(layers: 2);
        using var model = new Qwen3MoeForCausalLM(p, dtype: ScalarType.BFloat16);
        model.InitializeWeights(F.Seed);
        var lora = LoraAdapters.Attach(model, LoraOptions.Default() with { AdapterDType = ScalarType.Float32 });
        var factors = model.named_parameters().Where(np => lora.IsAdapterParameter(np.name)).ToList();
        Assert.That(factors.Select(f => f.parameter.dtype), Is.All.EqualTo(ScalarType.Float32));
        using var executor = new SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(executor, new TrainingOptions { TotalSteps = 2, LearningRate = 1e-2 });
        Assert.That(trainer.MasterWeights, Is.Null, "float32 adapters need no master copies");
        Assert.That(OptimizerSlot.Of(trainer).Select(s => s.ExpAvg.dtype), Is.All.EqualTo(ScalarType.Float32), "float32 AdamW state");
        var r = trainer.TrainStep(new[] { F.Batch(2) });
        Assert.That(double.IsFinite(r.Loss), Is.True);
        Assert.That(model.named_parameters().Where(np => !lora.IsAdapterParameter(np.name)).Select(np => np.parameter.dtype),
            Is.All.EqualTo(ScalarType.BFloat16));
    }

    /// <summary>A training checkpoint of a LoRA run holds the adapters and their optimizer state (not the frozen base) and resumes exactly.</summary>
    [Test]
    public void TrainingCheckpointResumesExactly()
    {
        const int total = 5, at = 2;
        var folder = Files.PathOf("ckpt");
        var p = F.Parameters(layers: 2);
        var options = new TrainingOptions { TotalSteps = total, LearningRate = 5e-3, WarmupSteps = 1, WeightDecay = 0.1 };
        List<double> Run(Qwen3MoeForCausalLM m, CausalLMTrainer t, int until)
        {
            var losses = new List<double>();
            while (t.Step < until) losses.Add(t.TrainStep(new[] { F.Batch(2, seed: 10 + t.Step) }).Loss);
            return losses;
        }
        using var a = F.Whole(p);
        LoraAdapters.Attach(a, All);
        using var ea = new SingleStageExecutor(a);
        using var ta = new CausalLMTrainer(ea, options);
        var expected = Run(a, ta, at);
        TrainingCheckpoint.Save(folder, ea, ta, new DataPosition(0, at));
        expected.AddRange(Run(a, ta, total));
        using (var f = SafetensorsFile.Open(Path.Combine(folder, "model.safetensors")))
            Assert.That(f.Entries.Keys, Is.EquivalentTo(a.Lora!.TrainableNames), "only trained tensors in the checkpoint");

        using var b = F.Whole(p);
        LoraAdapters.Attach(b, All with { Seed = 99 });
        using var eb = new SingleStageExecutor(b);
        using var tb = new CausalLMTrainer(eb, options);
        TrainingCheckpoint.Restore(folder, eb, tb);
        var resumed = Run(b, tb, total);
        for (int s = at; s < total; s++) Assert.That(resumed[s - at], Is.EqualTo(expected[s]), $"loss of step {s}");
    }
}
