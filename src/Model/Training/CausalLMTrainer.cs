using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>
/// Optimizer steps for a Qwen3-MoE model run by an <see cref="IStepExecutor"/>: gradient accumulation weighted per target
/// token, optional auxiliary loss, global-norm clipping, AdamW with a warm-up + decay schedule, optional float32 master
/// weights for bf16 models, and a non-finite guard that never lets a bad step touch the weights.
/// </summary>
public sealed class CausalLMTrainer : IDisposable
{
    private readonly IStepExecutor _executor;
    private readonly TrainingOptions _options;
    private readonly LearningRateSchedule _schedule;
    private readonly List<Parameter> _trainable;
    private readonly List<string> _trainableNames;
    private readonly List<Parameter>? _masters; // float32 copies of _trainable, when the model is not float32
    private readonly AdamW? _optimizer;   // TorchSharp's per-parameter AdamW, when FusedOptimizer is off
    private readonly FusedAdamW? _fused;
    private readonly double _auxCoefficient;

    /// <summary>Prepares the optimizer over the trainable parameters of every stage.</summary>
    public CausalLMTrainer(IStepExecutor executor, TrainingOptions options)
    {
        options.Validate();
        _executor = executor;
        _options = options;
        _schedule = new LearningRateSchedule(options.LearningRate, options.WarmupSteps, options.TotalSteps, options.Schedule, options.MinLearningRateRatio);
        var p = executor.Stages[0].Parameters;
        _auxCoefficient = options.IncludeAuxiliaryLoss ? p.RouterAuxLossCoefficient : 0;
        var selected = SelectTrainable(executor.Stages, options.Trainable);
        _trainable = selected.Select(x => x.Parameter).ToList();
        _trainableNames = selected.Select(x => x.Name).ToList();
        if (options.Float32MasterWeights && _trainable.Any(t => t.dtype != ScalarType.Float32))
        {
            using var _ = no_grad();
            _masters = _trainable.Select(t => new Parameter(t.detach().to(ScalarType.Float32, copy: true), requires_grad: true)).ToList();
        }
        if (options.FusedOptimizer) _fused = new FusedAdamW(_masters ?? _trainable, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay);
        else _optimizer = optim.AdamW(_masters ?? _trainable, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay);
        foreach (var s in executor.Stages) s.train();
    }

    /// <summary>Optimizer steps taken so far.</summary>
    public int Step { get; private set; }

    /// <summary>The parameters being trained (in the model's dtype).</summary>
    public IReadOnlyList<Parameter> TrainedParameters => _trainable;

    /// <summary>Names of <see cref="TrainedParameters"/>, in the same order (the optimizer's order).</summary>
    internal IReadOnlyList<string> TrainedParameterNames => _trainableNames;

    /// <summary>The options the trainer was built with.</summary>
    internal TrainingOptions Options => _options;

    /// <summary>
    /// TorchSharp's AdamW instance when <see cref="TrainingOptions.FusedOptimizer"/> is off (its state is what a
    /// training checkpoint saves); else null.
    /// </summary>
    public AdamW? Optimizer => _optimizer;

    /// <summary>
    /// The fused AdamW when <see cref="TrainingOptions.FusedOptimizer"/> is on (its moments and step counts are what a
    /// training checkpoint saves); else null.
    /// </summary>
    public FusedAdamW? FusedOptimizer => _fused;

    /// <summary>Float32 master weights, or null when the optimizer updates the model parameters directly.</summary>
    public IReadOnlyList<Parameter>? MasterWeights => _masters;

    /// <summary>Continues the step counter (and so the schedule) after a resume.</summary>
    public void SetStep(int step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "Step must not be negative.");
        Step = step;
    }

    /// <summary>
    /// Runs forward and backward over each of <paramref name="batches"/> and then throws everything away: no optimizer
    /// step, gradients cleared, MoE routing counts restored, the step counter unchanged. What stays is what the device
    /// keeps per shape (kernel choices, loaded kernels, cached allocator blocks), so later steps of these shapes pay no
    /// first-call cost.
    /// </summary>
    public void WarmUp(IEnumerable<CausalLMBatch> batches)
    {
        using var scope = NewDisposeScope();
        var counts = _executor.Stages.Select(s => s.MoeTokensPerExpert).ToList();
        foreach (var b in batches)
        {
            var labels = b.Labels ?? throw new ArgumentException("Warm-up batches need labels.", nameof(batches));
            long targets = labels.ne(Scalars.IgnoreIndex).sum().item<long>();
            _executor.ForwardBackward(b, Math.Max(targets, 1), _auxCoefficient);
            foreach (var stage in _executor.Stages)
                foreach (var parameter in stage.parameters()) parameter.grad = null;
        }
        for (int i = 0; i < counts.Count; i++) _executor.Stages[i].RestoreMoeStats(counts[i]);
    }

    /// <summary>One optimizer step over <paramref name="batches"/> (gradient accumulation: every target token weighs the same).</summary>
    /// <exception cref="InvalidOperationException">A non-finite loss or gradient with <see cref="NonFinitePolicy.Stop"/>; the weights are
    /// untouched.</exception>
    public TrainStepResult TrainStep(IReadOnlyList<CausalLMBatch> batches)
    {
        if (batches.Count == 0) throw new ArgumentException("A training step needs at least one batch.", nameof(batches));
        using var scope = NewDisposeScope();
        long targets = batches.Sum(b =>
            (b.Labels ?? throw new ArgumentException("Training batches need labels.", nameof(batches))).ne(Scalars.IgnoreIndex).sum().item<long>());
        foreach (var t in _trainable) t.grad = null;
        Tensor? nll = null, aux = null;
        foreach (var b in batches)
        {
            var sums = _executor.ForwardBackward(b, targets, _auxCoefficient / batches.Count); // aux: mean over the accumulated batches
            nll = nll is null ? sums.NllSum : nll.Plus(sums.NllSum.to(nll.device));
            aux = aux is null ? sums.AuxLoss : aux.Plus(sums.AuxLoss.to(aux.device));
        }
        double loss = nll!.item<float>() / Math.Max(targets, 1);
        double auxMean = aux!.item<float>() / batches.Count;
        var optimized = _masters ?? _trainable;
        if (_masters is not null)
        {
            for (int i = 0; i < _trainable.Count; i++) _masters[i].grad = _trainable[i].grad?.to(ScalarType.Float32);
            foreach (var t in _trainable) t.grad = null; // the float32 copies are what the optimizer reads
        }
        double norm = GradientClipping.ClipByGlobalNorm(optimized, _options.ClipGradientNorm ?? double.PositiveInfinity).item<float>();
        double lr = _schedule.At(Step);
        if (!double.IsFinite(loss) || !double.IsFinite(norm) || !double.IsFinite(auxMean))
        {
            var where = !double.IsFinite(loss) ? $"loss = {loss}" : !double.IsFinite(auxMean) ? $"auxiliary loss = {auxMean}"
                : $"gradient norm = {norm} ({FirstNonFiniteGradient()})";
            foreach (var t in optimized) t.grad = null;
            if (_options.OnNonFinite == NonFinitePolicy.Stop)
                throw new InvalidOperationException($"Training step {Step}: non-finite {where}. The weights keep their values from before this step.");
            return new TrainStepResult(Step++, loss, auxMean, norm, lr, targets, Skipped: true);
        }
        if (_fused is not null) _fused.Step(lr);
        else
        {
            foreach (var g in _optimizer!.ParamGroups) g.LearningRate = lr;
            _optimizer.step();
        }
        if (_masters is not null)
        {
            using var _ = no_grad();
            for (int i = 0; i < _trainable.Count; i++) _trainable[i].copy_(_masters[i]);
        }
        foreach (var t in optimized) t.grad = null;
        return new TrainStepResult(Step++, loss, auxMean, norm, lr, targets, Skipped: false);
    }

    private string FirstNonFiniteGradient()
    {
        foreach (var stage in _executor.Stages)
            foreach (var (name, p) in stage.UniqueNamedParameters())
                if (p.grad is not null && !p.grad.isfinite().all().item<bool>()) return $"first in '{name}'";
        return "in the float32 master gradients";
    }

    private static List<(string Name, Parameter Parameter)> SelectTrainable(IReadOnlyList<Qwen3MoeForCausalLM> stages, TrainableParameters which)
    {
        var order = stages[0].Parameters.Model.SplitVocabOrder;
        if (which == TrainableParameters.AddedVocabularyOnly && order.Count < 2)
            throw new ArgumentException("TrainableParameters.AddedVocabularyOnly needs a model with an added vocabulary split.", nameof(which));
        var added = order.Skip(1).ToHashSet();
        bool Trains(string name) => which switch
        {
            TrainableParameters.All => true,
            TrainableParameters.AllButExperts => !name.Contains(".mlp.experts.", StringComparison.Ordinal),
            _ => added.Any(s => name.EndsWith($".{s}.weight", StringComparison.Ordinal)
                && (name.StartsWith("model.embed_tokens.", StringComparison.Ordinal) || name.StartsWith("lm_head.", StringComparison.Ordinal))),
        };
        if (which != TrainableParameters.All && stages.Any(s => s.Lora is not null))
            throw new ArgumentException($"TrainableParameters.{which} does not combine with LoRA adapters: they choose what trains.", nameof(which));
        var result = new List<(string, Parameter)>();
        foreach (var stage in stages)
            foreach (var (name, p) in stage.UniqueNamedParameters())
            {
                bool t = stage.Lora is { } lora ? lora.TrainableNames.Contains(name) : Trains(name); // LoRA: factors and fully trained modules only
                p.requires_grad = t;
                if (t) result.Add((name, p));
            }
        return result;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _optimizer?.Dispose();
        _fused?.Dispose();
        foreach (var m in _masters ?? new List<Parameter>()) m.Dispose();
    }
}
