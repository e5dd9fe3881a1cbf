using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Lora;
using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Qwen3Moe.Runtime;
using Microsoft.ML.Qwen3Moe.Scoring;
using Microsoft.ML.Qwen3Moe.Tokenization;
using Microsoft.ML.Qwen3Moe.Training;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Fine-tunes a Qwen3-MoE causal language model on a text column (next-token loss) and returns a
/// <see cref="Qwen3MoeTransformer"/> that scores text. Create it with <c>mlContext.Qwen3Moe().FineTune(...)</c>.
/// </summary>
/// <remarks>
/// <para><see cref="Fit"/> checks the schema, reads and tokenizes the column once (null/empty, single-token and too
/// long rows are skipped or truncated and counted in warnings), right-pads rows into batches with labels masked
/// (-100) on padding, and runs AdamW steps with the model library's trainer (gradient accumulation, clipping, warm-up
/// then cosine/linear decay), reporting step, loss, tokens/s and learning rate through ML.NET's channels.</para>
/// <para>Devices follow <see cref="MLContext.GpuDeviceId"/> and <see cref="MLContext.FallbackToCpu"/>, or
/// <see cref="Options.StageDevices"/>. The training rows' token ids are held in memory during the fit (4 bytes per
/// token).</para>
/// </remarks>
public sealed partial class Qwen3MoeEstimator : IEstimator<Qwen3MoeTransformer>
{
    private readonly MLContext _context;
    private readonly IHost _host;
    private readonly Options _options;

    internal Qwen3MoeEstimator(MLContext context, Options options)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _context = context;
        _options = options;
        _host = ((IHostEnvironment)context).Register(nameof(Qwen3MoeEstimator));
        Qwen3MoeModelFile.TryRegister(context);
    }

    /// <summary>The input shape plus the four score columns; checks the input column (ML.NET's schema messages).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The text (or token ids) column is missing or of the wrong type.</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        InputColumn.Check(inputSchema, _options);
        return ScoreSchemaShape.Append(_context, inputSchema, _options);
    }

    /// <summary>Fine-tunes on <paramref name="input"/> and returns the scoring transformer (which owns the trained model).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The input column is missing or of the wrong type.</exception>
    /// <exception cref="InvalidOperationException">A GPU was asked for but none is usable, or a non-finite loss with <see cref="NonFinitePolicy.Stop"/>.</exception>
        public Qwen3MoeTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var source = InputColumn.Resolve(input.Schema, _options);
        using var ch = _host.Start("TrainModel");
        using var pch = _host.StartProgressChannel("Training model");

        var parameters = WithPipelineLayout(_options.ModelPath is not null ? HuggingFaceConfig.Load(_options.ModelPath) : _options.NewModel!);
        var (tokenizerSource, tokenizer) = LoadTokenizer();
        var corpus = TrainingCorpus.Read(input, source, tokenizer, _options.MaxSequenceLength, _options.LongTextHandling);
        foreach (var w in corpus.Warnings(_options.MaxSequenceLength)) ch.Warning(MessageSensitivity.None, "{0}", w);

        var (devices, deviceWarnings) = DevicePolicy.ResolveStages(_context, _options.StageDevices, _options.NumberOfStages);
        foreach (var w in deviceWarnings) ch.Warning(MessageSensitivity.None, "{0}", w);
        var stages = ModelStages.Build(parameters, _options.ModelPath, _options.Seed, devices, _options.Precision.ToScalarType());
        foreach (var stage in stages) stage.EnableCheckpointing = _options.ActivationCheckpointing;
        IStepExecutor executor;
        BaseModelReference? baseModel = null;
        try
        {
            if (_options.FineTuning == Qwen3MoeFineTuning.LoRA) baseModel = AttachAdapters(stages, ch);
            executor = StepExecutorFactory.Create(stages, _options.PipelineSchedule, _options.MicroBatches);
        }
        catch
        {
            foreach (var s in stages) s.Dispose();
            throw;
        }

        var history = new List<TrainStepResult>();
        try
        {
            if (corpus.Sequences.Count == 0)
                ch.Warning(MessageSensitivity.None, "{0}", $"No usable training rows (of {corpus.Rows} read); the model is returned unchanged.");
            else
                Train(corpus, executor, tokenizer, ch, pch, history);
        }
        catch
        {
            executor.Dispose();
            foreach (var s in stages) s.Dispose();
            throw;
        }
        return new Qwen3MoeTransformer(_context, stages, executor, tokenizerSource, tokenizer, _options, history, baseModel);
    }

    /// <summary>New adapters (or those of <see cref="Options.AdapterPath"/>) on every stage; returns the base folder's fingerprint.</summary>
    private BaseModelReference AttachAdapters(Qwen3MoeForCausalLM[] stages, IChannel ch)
    {
        var reference = BaseModelReference.Of(_options.ModelPath!);
        if (_options.AdapterPath is not null) PeftAdapter.Load(stages, _options.AdapterPath);
        else foreach (var stage in stages) LoraAdapters.Attach(stage, _options.ToLoraOptions());
        long trainable = stages.Sum(s => s.parameters().Where(p => p.requires_grad).Sum(p => p.numel()));
        long all = stages.Sum(s => s.parameters().Sum(p => p.numel()));
        ch.Info(MessageSensitivity.None, "{0}", $"LoRA: {trainable:N0} trainable parameters of {all:N0} ({100.0 * trainable / all:F2}%), targets {stages[0].Lora!.Options.Targets}; base '{reference.Path}' frozen.");
        return reference;
    }

    private void Train(TrainingCorpus corpus, IStepExecutor executor, Qwen3Tokenizer? tokenizer, IChannel ch, IProgressChannel pch, List<TrainStepResult> history)
    {
        int n = corpus.Sequences.Count;
        int batchesPerEpoch = (n + _options.BatchSize - 1) / _options.BatchSize;
        int stepsPerEpoch = (batchesPerEpoch + _options.GradientAccumulationSteps - 1) / _options.GradientAccumulationSteps;
        long planned = (long)stepsPerEpoch * _options.MaxEpochs;
        int totalSteps = (int)Math.Min(_options.MaxSteps > 0 ? _options.MaxSteps : int.MaxValue, planned);
        ch.Info(MessageSensitivity.None, "{0}", $"Fine-tuning on {n} rows ({corpus.Tokens} tokens): {totalSteps} optimizer steps of up to {_options.BatchSize * _options.GradientAccumulationSteps} rows, {_options.NumberOfStages} stage(s) on {string.Join(", ", executor.Stages.Select(s => s.Device.ToString()).Distinct())}.");

        var builder = new CausalLMBatchBuilder(tokenizer?.PadTokenId ?? 0, _options.MaxSequenceLength);
        var progress = new TrainingProgress(ch, pch, totalSteps, _options.LogEveryNStep);
        using var trainer = new CausalLMTrainer(executor, _options.ToTrainingOptions(totalSteps));
        var checkpointer = _options.CheckpointDirectory is null ? null : new TrainingCheckpointer(new TrainingCheckpointerOptions
        {
            Directory = _options.CheckpointDirectory, SaveEverySteps = _options.CheckpointEverySteps, KeepLast = _options.KeepCheckpoints,
            Log = m => ch.Info(MessageSensitivity.None, "{0}", m),
        });
        var start = DataPosition.Start;
        if (checkpointer is not null && _options.ResumeFromCheckpoint && checkpointer.TryRestoreLatest(executor, trainer, out var restored))
        {
            start = restored;
            ch.Info(MessageSensitivity.None, "{0}", $"Resumed from the training checkpoint of step {trainer.Step} (epoch {start.Epoch + 1}, step {start.BatchIndex + 1} of the epoch).");
        }
        int rowsPerStep = _options.BatchSize * _options.GradientAccumulationSteps;
        for (long epoch = start.Epoch; epoch < _options.MaxEpochs && trainer.Step < totalSteps; epoch++)
        {
            ch.Trace(MessageSensitivity.None, "{0}", $"Starting epoch {epoch + 1}");
            // the order depends only on (seed, epoch), so a resumed run sees the rows the interrupted one would have
            var order = _options.Shuffle ? DataOrder.Permutation(n, _options.Seed, epoch) : Enumerable.Range(0, n).ToArray();
            var steps = order.Chunk(rowsPerStep).ToList();
            for (int b = epoch == start.Epoch ? (int)start.BatchIndex : 0; b < steps.Count && trainer.Step < totalSteps; b++)
            {
                var clock = Stopwatch.StartNew();
                using var scope = NewDisposeScope();
                var batches = steps[b].Chunk(_options.BatchSize)
                    .Select(rows => builder.Build(rows.Select(r => (IReadOnlyList<int>)corpus.Sequences[r]).ToList()).Batch)
                    .ToList();
                var result = trainer.TrainStep(batches);
                history.Add(result);
                progress.Report(result, clock.Elapsed.TotalSeconds);
                checkpointer?.SaveIfDue(executor, trainer, b + 1 < steps.Count ? new DataPosition(epoch, b + 1) : new DataPosition(epoch + 1, 0));
            }
            ch.Trace(MessageSensitivity.None, "{0}", $"Finished epoch {epoch + 1}");
        }
    }

    private Qwen3MoeForCausalLMParameters WithPipelineLayout(Qwen3MoeForCausalLMParameters p) =>
        _options.NumberOfVirtualLayersPre == 0 && _options.NumberOfVirtualLayersPost == 0
            ? p
            : p with { Model = p.Model with { PipelineNumVirtualLayersPre = _options.NumberOfVirtualLayersPre, PipelineNumVirtualLayersPost = _options.NumberOfVirtualLayersPost } };

    private (TokenizerSource? Source, Qwen3Tokenizer? Tokenizer) LoadTokenizer()
    {
        var folder = _options.TokenizerPath ?? _options.ModelPath;
        if (_options.TokenizerPath is not null || (folder is not null && TokenizerSource.Exists(folder)))
        {
            var (source, tokenizer) = TokenizerSource.Load(folder!);
            return (source, tokenizer);
        }
        if (_options.TokenIdsColumnName is not null) return (null, null);
        throw new FileNotFoundException(folder is null
            ? "A new model needs a tokenizer: set TokenizerPath, or train on token ids (TokenIdsColumnName)."
            : $"'{folder}' has no tokenizer (tokenizer.json, or vocab.json + merges.txt): set TokenizerPath, or train on token ids (TokenIdsColumnName).");
    }
}
