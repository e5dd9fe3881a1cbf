using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Pipelining;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>
/// Trains and scores a model split into pipeline stages (stage i built with <c>new PipelineStageInfo(i, n)</c>, each on its
/// own device) by splitting every batch into equal micro-batches on dim 0 and running an explicit action list
/// (<see cref="PipelineSchedule"/>) on the calling thread. Activations travel to the next stage with <c>.to(device)</c>
/// and enter it as fresh leaves; the gradient of each stage input travels back and is fed to
/// <c>autograd.backward</c> of the previous stage's outputs.
/// </summary>
/// <remarks>
/// <para>
/// Loss weighting is d9d's: every micro-batch contributes <c>Σ per-token NLL / targetTokens</c>, where targetTokens counts
/// the whole optimizer step, so gradients equal those of the unpipelined model on the whole batch.
/// </para>
/// <para>
/// The load-balancing loss is HF's formula over all layers of each micro-batch (the stages' partial router sums are
/// combined before any backward of that micro-batch), averaged over micro-batches: it equals the unpipelined loss for one
/// micro-batch and the gradient-accumulated loss (the trainer given the micro-batches as separate batches) for several. HF's loss over the whole batch is not
/// separable: its expert-choice fractions are
/// global, which 1F1B cannot know before the first backward.
/// </para>
/// <para>
/// TorchSharp has no streams and the actions are issued one after the other from the calling thread. CUDA launches are
/// asynchronous and no action reads a device value on the host, so stages on different GPUs still overlap, limited by
/// the transfers between them (measured on two H100s: 1.25x one GPU with 1F1B and 4 micro-batches, against an ideal
/// 1.6x); for 1F1B the schedule also bounds the activations kept per stage.
/// </para>
/// </remarks>
public sealed class PipelineExecutor : IStepExecutor
{
    private readonly Qwen3MoeForCausalLM[] _stages;
    private readonly IReadOnlyList<PipelineAction> _training;
    private readonly IReadOnlyList<PipelineAction> _forwardOnly;

    /// <summary>
    /// Runs <paramref name="stages"/> (stage i built for <c>PipelineStageInfo(i, stages.Count)</c>, already on its
    /// device) with <paramref name="schedule"/>. The executor does not dispose the stages.
    /// </summary>
    /// <param name="stages">The stages, first to last.</param>
    /// <param name="schedule">Training schedule.</param>
    /// <param name="microBatches">Micro-batches per batch; batch sizes must be multiples of it.</param>
    /// <exception cref="ArgumentException">The stages do not form one pipeline.</exception>
    public PipelineExecutor(IReadOnlyList<Qwen3MoeForCausalLM> stages, PipelineScheduleKind schedule, int microBatches)
    {
        if (stages.Count == 0) throw new ArgumentException("A pipeline needs at least one stage.", nameof(stages));
        if (microBatches <= 0) throw new ArgumentOutOfRangeException(nameof(microBatches), microBatches, "MicroBatches must be positive.");
        for (int i = 0; i < stages.Count; i++)
        {
            if (stages[i].Stage != new PipelineStageInfo(i, stages.Count))
                throw new ArgumentException($"Stage {i} was built as {stages[i].Stage}, expected PipelineStageInfo({i}, {stages.Count}).", nameof(stages));
            if (stages[i].Parameters.Model.NumHiddenLayers != stages[0].Parameters.Model.NumHiddenLayers
                || stages[i].Model.HiddenStatesSnapshotMode != stages[0].Model.HiddenStatesSnapshotMode)
                throw new ArgumentException($"Stage {i} was built from other parameters or another snapshot mode than stage 0.", nameof(stages));
        }
        _stages = stages.ToArray();
        Schedule = schedule;
        MicroBatches = microBatches;
        _training = PipelineSchedule.Build(schedule, stages.Count, microBatches, training: true);
        _forwardOnly = PipelineSchedule.Build(schedule, stages.Count, microBatches, training: false);
    }

    /// <inheritdoc />
    public IReadOnlyList<Qwen3MoeForCausalLM> Stages => _stages;

    /// <summary>The training schedule.</summary>
    public PipelineScheduleKind Schedule { get; }

    /// <summary>Micro-batches per batch.</summary>
    public int MicroBatches { get; }

    /// <summary>The actions of a training step, in execution order.</summary>
    public IReadOnlyList<PipelineAction> TrainingActions => _training;

    /// <summary>The actions of a forward-only pass (scoring), in execution order.</summary>
    public IReadOnlyList<PipelineAction> ForwardOnlyActions => _forwardOnly;

    /// <inheritdoc />
    /// <remarks>
    /// A batch whose rows do not split evenly into <see cref="MicroBatches"/> runs as two passes: the largest evenly
    /// splitting part, then the remaining rows as one-row micro-batches. Gradients are the same (every target token
    /// weighs 1 / <paramref name="targetTokens"/>); the load-balancing loss stays a mean over micro-batches.
    /// </remarks>
    public StepSums ForwardBackward(CausalLMBatch batch, long targetTokens, double auxCoefficient)
    {
        if (batch.Labels is null) throw new ArgumentException("Training needs labels.", nameof(batch));
        CheckAtEntry(batch);
        return ForwardBackwardChecked(batch, targetTokens, auxCoefficient);
    }

    private StepSums ForwardBackwardChecked(CausalLMBatch batch, long targetTokens, double auxCoefficient)
    {
        if (Uneven(batch) is { } parts)
        {
            using var partScope = NewDisposeScope();
            double allMicroBatches = parts.Sum(q => q.Executor.MicroBatches);
            var sums = parts.Select(p => (p.Executor.ForwardBackwardChecked(p.Rows, targetTokens, auxCoefficient * p.Executor.MicroBatches / allMicroBatches),
                p.Executor.MicroBatches)).ToList();
            int total = sums.Sum(x => x.MicroBatches);
            var nll = sums.Select(x => x.Item1.NllSum).Aggregate((a, b) => a.Plus(b.to(a.device)));
            var aux = sums.Select(x => x.Item1.AuxLoss.Times(x.MicroBatches / (double)total)).Aggregate((a, b) => a.Plus(b.to(a.device)));
            return new StepSums(nll.MoveToOuterDisposeScope(), aux.MoveToOuterDisposeScope());
        }
        using var scope = NewDisposeScope();
        using var run = new Run(this, batch, training: true);
        run.TargetTokens = Math.Max(targetTokens, 1);
        run.AuxCoefficient = auxCoefficient;
        foreach (var a in _training)
        {
            if (a.Kind == PipelineActionKind.Forward) run.Forward(a.Stage, a.MicroBatch);
            else run.Backward(a.Stage, a.MicroBatch);
        }
        return new StepSums(run.NllSum().MoveToOuterDisposeScope(), run.AuxSum().Over(MicroBatches).MoveToOuterDisposeScope());
    }

    /// <inheritdoc />
    public Tensor Score(CausalLMBatch batch)
    {
        if (batch.Labels is null) throw new ArgumentException("Scoring needs labels (the next-token targets).", nameof(batch));
        CheckAtEntry(batch);
        return ScoreChecked(batch);
    }

    private Tensor ScoreChecked(CausalLMBatch batch)
    {
        if (Uneven(batch) is { } parts)
        {
            using var partScope = NewDisposeScope();
            var scores = parts.Select(p => p.Executor.ScoreChecked(p.Rows)).ToList();
            return cat(scores.Select(t => t.to(scores[0].device)).ToArray(), 0).MoveToOuterDisposeScope();
        }
        using var output = ForwardChecked(batch);
        return output.TokenNll!.alias();
    }

    /// <summary>The one check of a batch (shapes, dtypes, host id and label ranges), where it enters the executor.</summary>
    private void CheckAtEntry(CausalLMBatch batch)
    {
        if (batch.InputIds is null) throw new ArgumentException("The first pipeline stage needs InputIds.", nameof(batch));
        CausalLMBatchCheck.Validate(batch, _stages[0].Parameters.Model.VocabSize);
    }

    /// <summary>
    /// For a batch whose rows do not split into <see cref="MicroBatches"/>: its evenly splitting rows and the rest,
    /// each with an executor that fits.
    /// </summary>
    private List<(CausalLMBatch Rows, PipelineExecutor Executor)>? Uneven(CausalLMBatch batch)
    {
        long rows = batch.InputIds!.shape[0];
        if (rows % MicroBatches == 0) return null;
        long even = rows / MicroBatches * MicroBatches;
        var parts = new List<(CausalLMBatch, PipelineExecutor)>();
        if (even > 0) parts.Add((MicroBatchSlicer.Rows(batch, 0, even), this));
        parts.Add((MicroBatchSlicer.Rows(batch, even, rows - even), new PipelineExecutor(_stages, Schedule, (int)(rows - even))));
        return parts;
    }

    /// <summary>
    /// Forward-only pass without autograd over all stages, micro-batch by micro-batch. Returns the last stage's outputs for
    /// the whole batch (hidden states after the final norm, per-token NLL with labels, logits when asked, the snapshot)
    /// and the router logits of every sparse layer in global layer order, each on its stage's device.
    /// </summary>
    public CausalLMOutput Forward(CausalLMBatch batch)
    {
        CheckAtEntry(batch);
        return ForwardChecked(batch);
    }

    private CausalLMOutput ForwardChecked(CausalLMBatch batch)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var run = new Run(this, batch, training: false);
        foreach (var a in _forwardOnly) run.Forward(a.Stage, a.MicroBatch);
        var outputs = run.LastOutputs;
        Tensor? Cat(Func<CausalLMOutput, Tensor?> pick, int dim) => outputs[0] is var o0 && pick(o0) is null ? null
            : cat(outputs.Select(o => pick(o)!).ToArray(), dim).MoveToOuterDisposeScope();
        var router = Enumerable.Range(0, _stages.Length)
            .SelectMany(s => Enumerable.Range(0, run.RouterLogits[s][0].Count)
                .Select(l => cat(run.RouterLogits[s].Select(r => r[l]).ToArray(), 0).MoveToOuterDisposeScope()))
            .ToList();
        return new CausalLMOutput
        {
            HiddenStates = Cat(o => o.HiddenStates, 0)!,
            TokenNll = Cat(o => o.TokenNll, 0),
            Logits = Cat(o => o.Logits, 0),
            HiddenStatesSnapshot = Cat(o => o.HiddenStatesSnapshot, 1),
            RouterLogits = router,
        };
    }

    /// <summary>Nothing to release: the executor does not own the stages.</summary>
    public void Dispose()
    {
    }

    /// <summary>The state of one pass over one batch: what each (stage, micro-batch) received, sent and must keep.</summary>
    private sealed class Run : IDisposable
    {
        private readonly PipelineExecutor _x;
        private readonly CausalLMBatch _batch;
        private readonly bool _training;
        private readonly int _n, _m;
        private readonly long _rows;
        private readonly IReadOnlyDictionary<string, StageTensorSpec>[] _inputSpecs;
        private readonly Tensor?[,] _inHidden, _inSnapshot, _outHidden, _outSnapshot, _auxProbabilities;
        private readonly Tensor?[] _loss, _choices, _probabilities, _routerRows, _nll, _aux;
        private readonly List<Tensor>[,] _owned;
        private readonly int _topK;

        public Run(PipelineExecutor executor, CausalLMBatch batch, bool training)
        {
            _x = executor;
            _batch = batch;
            _training = training;
            _n = executor._stages.Length;
            _m = executor.MicroBatches;
            var ids = batch.InputIds!; // checked where the batch entered the executor
            _inputSpecs = executor._stages.Select(s => s.InferStageInputs(ids.shape, _m)).ToArray();
            _rows = ids.shape[0] / _m;
            _inHidden = new Tensor?[_n, _m];
            _inSnapshot = new Tensor?[_n, _m];
            _outHidden = new Tensor?[_n, _m];
            _outSnapshot = new Tensor?[_n, _m];
            _auxProbabilities = new Tensor?[_n, _m];
            _loss = new Tensor?[_m];
            _choices = new Tensor?[_m];
            _probabilities = new Tensor?[_m];
            _routerRows = new Tensor?[_m];
            _nll = new Tensor?[_m];
            _aux = new Tensor?[_m];
            _owned = new List<Tensor>[_n, _m];
            for (int s = 0; s < _n; s++)
                for (int i = 0; i < _m; i++) _owned[s, i] = new List<Tensor>();
            RouterLogits = Enumerable.Range(0, _n).Select(_ => new List<IReadOnlyList<Tensor>>()).ToArray();
            _topK = executor._stages[0].Parameters.Model.Layer.ExpertsTopK;
        }

        public long TargetTokens { get; set; } = 1;

        public double AuxCoefficient { get; set; }

        /// <summary>float32 scalar on the last device: Σ NLL over the batch (after the last forward).</summary>
        public Tensor NllSum() => stack(_nll.Select(t => t!).ToArray()).sum();

        /// <summary>float32 scalar on the last device: Σ over micro-batches of their load-balancing loss (0 without sparse layers).</summary>
        public Tensor AuxSum() => _aux[0] is null
            ? zeros(Array.Empty<long>(), dtype: ScalarType.Float32, device: Stage(_n - 1).Device)
            : stack(_aux.Select(t => t!).ToArray()).sum();

        /// <summary>Forward-only: the last stage's output of each micro-batch.</summary>
        public List<CausalLMOutput> LastOutputs { get; } = new();

        /// <summary>Forward-only: per stage, the router logits of each micro-batch.</summary>
        public List<IReadOnlyList<Tensor>>[] RouterLogits { get; }

        private Qwen3MoeForCausalLM Stage(int s) => _x._stages[s];

        private T Keep<T>(int s, int i, T t) where T : Tensor
        {
            t.DetachFromDisposeScope();
            _owned[s, i].Add(t);
            return t;
        }

        public void Forward(int s, int i)
        {
            using var scope = NewDisposeScope();
            var stage = Stage(s);
            bool last = s == _n - 1;
            var mb = MicroBatchSlicer.Slice(_batch, i, _rows, stage.Device, s == 0, last);
            if (s > 0)
            {
                CheckReceived(s, StageTensorNames.HiddenStates, _inHidden[s, i]);
                CheckReceived(s, StageTensorNames.HiddenStatesSnapshot, _inSnapshot[s, i]);
                mb = mb with { HiddenStates = _inHidden[s, i], HiddenStatesSnapshot = _inSnapshot[s, i] };
            }
            var o = stage.forward(mb);
            if (!_training)
            {
                KeepForwardOnly(s, i, o);
                if (!last) Send(s, i, o);
                if (s > 0) Release(s - 1, i);
                return;
            }
            if (!last) Send(s, i, o);
            if (o.RouterLogits.Count > 0) AddRouterSums(s, i, o.RouterLogits, mb.AttentionMask);
            if (last)
            {
                var nll = o.TokenNll!.sum();
                _loss[i] = Keep(s, i, CausalLMLoss.Objective(nll, TargetTokens, aux: null, 0)); // the aux shares join per stage in Backward
                _nll[i] = nll.detach().DetachFromDisposeScope();
                if (_choices[i] is not null)
                    _aux[i] = LoadBalancingLoss.FromSums(_choices[i]!, _probabilities[i]!, _routerRows[i]!).DetachFromDisposeScope();
            }
        }

        public void Backward(int s, int i)
        {
            using var scope = NewDisposeScope();
            var device = Stage(s).Device;
            var outputs = new List<Tensor>();
            var grads = new List<Tensor>();
            void Add(Tensor? output, Tensor? grad)
            {
                if (output is null || grad is null || !output.requires_grad) return;
                outputs.Add(output);
                grads.Add(grad.to(device));
            }
            if (s == _n - 1) Add(_loss[i], ones(Array.Empty<long>(), dtype: ScalarType.Float32, device: device));
            else
            {
                Add(_outHidden[s, i], _inHidden[s + 1, i]!.grad);
                Add(_outSnapshot[s, i], _inSnapshot[s + 1, i]?.grad);
            }
            if (AuxCoefficient != 0 && _auxProbabilities[s, i] is { } probabilities)
            {
                // This stage's share of the micro-batch's load-balancing loss (a mean over micro-batches); the counts are constants.
                var share = LoadBalancingLoss.FromSums(_choices[i]!.to(device), probabilities, _routerRows[i]!.to(device)) .Times(AuxCoefficient / _m);
                Add(share, ones_like(share));
            }
            if (outputs.Count > 0) autograd.backward(outputs, grads);
            Autograd.ReturnedGradients.ReleaseAll();
            if (s < _n - 1) Release(s + 1, i);
            if (s == 0) Release(0, i);
        }

        private void Send(int s, int i, CausalLMOutput o)
        {
            var next = Stage(s + 1).Device;
            Tensor Leaf(Tensor t)
            {
                var r = t.detach().to(next);
                return _training ? r.requires_grad_(true) : r;
            }
            _inHidden[s + 1, i] = Keep(s + 1, i, Leaf(o.HiddenStates));
            if (o.HiddenStatesSnapshot is not null) _inSnapshot[s + 1, i] = Keep(s + 1, i, Leaf(o.HiddenStatesSnapshot));
            if (_training)
            {
                _outHidden[s, i] = Keep(s, i, o.HiddenStates);
                if (o.HiddenStatesSnapshot is not null) _outSnapshot[s, i] = Keep(s, i, o.HiddenStatesSnapshot);
            }
        }

        private void AddRouterSums(int s, int i, IReadOnlyList<Tensor> routerLogits, Tensor? attentionMask)
        {
            LoadBalancingSums sums;
            using (AuxCoefficient != 0 ? enable_grad() : no_grad()) sums = LoadBalancingLoss.Sums(routerLogits, _topK, attentionMask);
            if (AuxCoefficient != 0) _auxProbabilities[s, i] = Keep(s, i, sums.Probabilities);
            // Totals live on the last device and belong to stage 0, whose backward is the micro-batch's last use of them.
            var lastDevice = Stage(_n - 1).Device;
            Tensor Add(Tensor? total, Tensor part) => Keep(0, i, total is null ? part.detach().to(lastDevice) : total.Plus(part.detach().to(lastDevice)));
            _choices[i] = Add(_choices[i], sums.Choices);
            _probabilities[i] = Add(_probabilities[i], sums.Probabilities);
            _routerRows[i] = Add(_routerRows[i], sums.Rows);
        }

        private void KeepForwardOnly(int s, int i, CausalLMOutput o)
        {
            foreach (var t in o.RouterLogits) t.DetachFromDisposeScope();
            RouterLogits[s].Add(o.RouterLogits);
            if (s != _n - 1) return;
            foreach (var t in new[] { o.HiddenStates, o.TokenNll, o.Logits, o.HiddenStatesSnapshot }) t?.DetachFromDisposeScope();
            LastOutputs.Add(o);
        }

        private void CheckReceived(int s, string name, Tensor? t)
        {
            bool expected = _inputSpecs[s].TryGetValue(name, out var spec);
            if (expected != t is not null || (t is not null && !spec!.Matches(t)))
                throw new InvalidOperationException($"Stage {s} expected {name} {(expected ? spec!.ToString() : "none")} but received " +
                    $"{(t is null ? "none" : $"[{string.Join(", ", t.shape)}] {t.dtype}")}.");
        }

        /// <summary>Disposes what (stage, micro-batch) kept; its autograd graph is already freed by the backward pass.</summary>
        private void Release(int s, int i)
        {
            foreach (var t in _owned[s, i]) t.Dispose();
            _owned[s, i].Clear();
        }

        public void Dispose()
        {
            for (int s = 0; s < _n; s++)
                for (int i = 0; i < _m; i++) Release(s, i);
            foreach (var o in LastOutputs) o.Dispose();
            foreach (var t in _nll.Concat(_aux)) t?.Dispose();
            foreach (var t in RouterLogits.SelectMany(r => r).SelectMany(r => r)) t.Dispose();
        }
    }
}
