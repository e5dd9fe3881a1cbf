using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training;

/// <summary>
/// <see cref="Qwen3Moe.Training.CausalLMTrainer.WarmUp"/> leaves no trace in the training: weights, gradients, step, routing
/// counts and later steps are those of a run without it.
/// </summary>
public class TrainerWarmUpTests
{
    [Test]
    public void AWarmedUpRunTrainsExactlyAsOneWithoutWarmUp()
    {
        using var scope = NewDisposeScope();
        using var warmed = new TinyTraining(seed: 3, TinyTraining.Options(totalSteps: 3));
        using var plain = new TinyTraining(seed: 3, TinyTraining.Options(totalSteps: 3));
        plain.Trainer.TrainStep(TinyTraining.Batches(0));
        warmed.Trainer.TrainStep(TinyTraining.Batches(0));
        var weights = warmed.Model.UniqueNamedParameters().Select(p => p.Parameter.clone()).ToList();
        var counts = warmed.Model.MoeTokensPerExpert.clone();
        Assert.That(counts.sum().item<long>(), Is.GreaterThan(0), "the first step counted routing choices");

        // two other widths and batch sizes, with padding
        warmed.Trainer.WarmUp(new[] { TinyTraining.Batch(90, rows: 3, length: 7), TinyTraining.Batch(91, rows: 2, length: 16) });

        Assert.That(warmed.Trainer.Step, Is.EqualTo(1), "no optimizer step");
        var after = warmed.Model.UniqueNamedParameters();
        for (int i = 0; i < weights.Count; i++)
        {
            TensorAssert.Equal(after[i].Parameter, weights[i], $"{after[i].Name} unchanged");
            Assert.That(after[i].Parameter.grad, Is.Null, $"{after[i].Name}: no gradient left behind");
        }
        TensorAssert.Equal(warmed.Model.MoeTokensPerExpert, counts, "routing counts restored");

        for (int step = 1; step < 3; step++)
        {
            var a = warmed.Trainer.TrainStep(TinyTraining.Batches(step));
            var b = plain.Trainer.TrainStep(TinyTraining.Batches(step));
            Assert.That(a.Loss, Is.EqualTo(b.Loss), $"loss of step {step}");
            Assert.That(a.GradientNorm, Is.EqualTo(b.GradientNorm), $"gradient norm of step {step}");
        }
        var trained = warmed.Model.UniqueNamedParameters();
        var reference = plain.Model.UniqueNamedParameters();
        for (int i = 0; i < trained.Count; i++) TensorAssert.Equal(trained[i].Parameter, reference[i].Parameter, trained[i].Name);
    }
}
