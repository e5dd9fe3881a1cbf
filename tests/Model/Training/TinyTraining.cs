using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;
using Microsoft.ML.Qwen3Moe.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Training;

/// <summary>A tiny model, its trainer and reproducible batches (a function of the step), for the training reliability tests.</summary>
internal sealed class TinyTraining : IDisposable
{
    public const int Vocab = 50;

    public TinyTraining(long seed, TrainingOptions options, ScalarType dtype = ScalarType.Float32)
    {
        Model = new Qwen3MoeForCausalLM(Qwen3MoeForCausalLMTests.TinyParameters(), dtype: dtype);
        Model.InitializeWeights(seed);
        Executor = new SingleStageExecutor(Model);
        Trainer = new CausalLMTrainer(Executor, options);
    }

    public Qwen3MoeForCausalLM Model { get; }

    public SingleStageExecutor Executor { get; }

    public CausalLMTrainer Trainer { get; }

    /// <summary>Options that make every piece of state matter: warm-up then cosine, clipping, weight decay, auxiliary loss.</summary>
    public static TrainingOptions Options(int totalSteps) => new()
    {
        TotalSteps = totalSteps, LearningRate = 5e-3, WarmupSteps = 2, ClipGradientNorm = 1.0, WeightDecay = 0.1,
    };

    /// <summary>
    /// The batches of step <paramref name="step"/>: <paramref name="micro"/> micro-batches of 2 rows x 12 tokens, the
    /// second row right-padded.
    /// </summary>
    public static CausalLMBatch[] Batches(int step, int micro = 1) =>
        Enumerable.Range(0, micro).Select(m => Batch(step * 16L + m)).ToArray();

    /// <summary>A batch drawn from its own generator seeded by <paramref name="seed"/> (not the default generator).</summary>
    public static CausalLMBatch Batch(long seed, int rows = 2, int length = 12)
    {
        using var gen = new Generator((ulong)seed + 1000);
        var ids = randint(0, Vocab, new long[] { rows, length }, generator: gen, dtype: ScalarType.Int64);
        var mask = ones(rows, length, dtype: ScalarType.Int64);
        if (rows > 1) mask[rows - 1, TensorIndex.Slice(length - 3)] = tensor(0L);
        return new CausalLMBatch { InputIds = ids, AttentionMask = mask, Labels = CausalLMLoss.ShiftLabels(ids, mask) };
    }

    /// <summary>Trains steps until the trainer reaches <paramref name="untilStep"/>; returns the losses by step.</summary>
    public List<double> TrainUntil(int untilStep, int micro = 1)
    {
        var losses = new List<double>();
        while (Trainer.Step < untilStep)
        {
            using var scope = NewDisposeScope();
            losses.Add(Trainer.TrainStep(Batches(Trainer.Step, micro)).Loss);
        }
        return losses;
    }

    public void Dispose()
    {
        Trainer.Dispose();
        Executor.Dispose();
        Model.Dispose();
    }
}
