using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Lora;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Qwen3Moe.Runtime;
using Microsoft.ML.Qwen3Moe.Tokenization;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
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
/// long rows are skipped or truncated and counted in warnings), right-pads rows (or, with
/// <see cref="Options.PackSequences"/>, rows packed several to a row) into batches with labels masked (-100) on padding,
/// and runs AdamW steps with the model library's trainer (gradient accumulation, clipping, warm-up then cosine/linear
/// decay), reporting step, loss, tokens/s and learning rate through ML.NET's channels.</para>
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
    /// <exception cref="InvalidOperationException">A GPU was asked for but none is usable, or a non-finite loss with
    /// <see cref="NonFinitePolicy.Stop"/>.</exception>
        public Qwen3MoeTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var source = InputColumn.Resolve(input.Schema, _options);
        var validationSource = _options.ValidationSet is null ? null : InputColumn.Resolve(_options.ValidationSet.Schema, _options);
        using var ch = _host.Start("TrainModel");
        using var pch = _host.StartProgressChannel("Training model");
        var cancellation = new TrainingCancellation(_host, _options.CancellationToken);
        cancellation.ThrowIfCanceled("before it started");

        var parameters = WithPipelineLayout(_options.ModelPath is not null ? HuggingFaceConfig.Load(_options.ModelPath) : _options.NewModel!);
        var (tokenizerSource, tokenizer) = LoadTokenizer();
        if (tokenizer is not null) VocabularyCheck.Ensure(tokenizer, (_options.TokenizerPath ?? _options.ModelPath)!, parameters, _options.ModelPath);
        var corpus = TrainingCorpus.Read(input, source, tokenizer, _options.MaxSequenceLength, _options.LongTextHandling, cancellation);
        foreach (var w in corpus.Warnings(_options.MaxSequenceLength)) ch.Warning(MessageSensitivity.None, "{0}", w);
        ValidationSet? validation = null;
        if (validationSource is not null)
        {
            var rows = TrainingCorpus.Read(_options.ValidationSet!, validationSource, tokenizer, _options.MaxSequenceLength, LongTextHandling.Truncate,
                cancellation);
            validation = new ValidationSet(rows, tokenizer?.PadTokenId ?? 0, _options.MaxSequenceLength, _options.BatchSize, _options.PadToMultipleOf);
            if (validation.Rows == 0) ch.Warning(MessageSensitivity.None, "{0}", $"The validation set has no row with a token to predict (of {rows.Rows} " +
                $"read): no validation loss will be reported.");
        }

        var (devices, deviceWarnings) = DevicePolicy.ResolveStages(_context, _options.StageDevices, _options.NumberOfStages);
        foreach (var w in deviceWarnings) ch.Warning(MessageSensitivity.None, "{0}", w);
        var model = StagedModel.Build(parameters, _options.ModelPath, _options.Seed, devices, _options.Precision.ToScalarType(),
            _options.PipelineSchedule, _options.MicroBatches, _options.ActivationCheckpointing, _options.Kernels);
        BaseModelReference? baseModel = null;
        try
        {
            if (_options.FineTuning == Qwen3MoeFineTuning.LoRA) baseModel = AttachAdapters(model.Stages, ch);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        var history = new List<TrainStepResult>();
        var validations = new List<ValidationResult>();
        try
        {
            if (corpus.Sequences.Count == 0)
                ch.Warning(MessageSensitivity.None, "{0}", $"No usable training rows (of {corpus.Rows} read); the model is returned unchanged.");
            else
                Train(corpus, model.Executor, tokenizer, ch, pch, history, validation, validations, cancellation);
            return new Qwen3MoeTransformer(_context, model, tokenizerSource, tokenizer, _options, history, validations, baseModel);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>New adapters (or those of <see cref="Options.AdapterPath"/>) on every stage; returns the base folder's fingerprint.</summary>
    private BaseModelReference AttachAdapters(Qwen3MoeForCausalLM[] stages, IChannel ch)
    {
        var reference = BaseModelReference.Of(_options.ModelPath!);
        if (_options.AdapterPath is not null) PeftAdapter.Load(stages, _options.AdapterPath);
        else foreach (var stage in stages) LoraAdapters.Attach(stage, _options.ToLoraOptions());
        long trainable = stages.Sum(s => s.parameters().Where(p => p.requires_grad).Sum(p => p.numel()));
        long all = stages.Sum(s => s.parameters().Sum(p => p.numel()));
        ch.Info(MessageSensitivity.None, "{0}", $"LoRA: {trainable:N0} trainable parameters of {all:N0} ({100.0 * trainable / all:F2}%), " +
            $"targets {stages[0].Lora!.Options.Targets}; base '{reference.Path}' frozen.");
        return reference;
    }

    private void Train(TrainingCorpus corpus, IStepExecutor executor, Qwen3Tokenizer? tokenizer, IChannel ch, IProgressChannel pch,
        List<TrainStepResult> history, ValidationSet? validation, List<ValidationResult> validations, TrainingCancellation cancellation)
    {
        // the rows trained on: one document each, or (PackSequences) the documents packed once, deterministically
        var rows = _options.PackSequences
            ? SequencePacker.Pack(corpus.Sequences.Select(s => s.Length).ToList(), _options.MaxSequenceLength)
            : Enumerable.Range(0, corpus.Sequences.Count).Select(i => new[] { i }).ToArray();
        int n = rows.Length;
        int batchesPerEpoch = (n + _options.BatchSize - 1) / _options.BatchSize;
        int stepsPerEpoch = (batchesPerEpoch + _options.GradientAccumulationSteps - 1) / _options.GradientAccumulationSteps;
        long planned = (long)stepsPerEpoch * _options.MaxEpochs;
        int totalSteps = (int)Math.Min(_options.MaxSteps > 0 ? _options.MaxSteps : int.MaxValue, planned);
        ch.Info(MessageSensitivity.None, "{0}",
            $"Fine-tuning on {n} {(_options.PackSequences ? "packed " : "")}rows ({corpus.Tokens} tokens): {totalSteps} optimizer steps of up to " +
            $"{_options.BatchSize * _options.GradientAccumulationSteps} rows, {_options.NumberOfStages} stage(s) " +
            $"on {string.Join(", ", executor.Stages.Select(s => s.Device.ToString()).Distinct())}.");

        var builder = new CausalLMBatchBuilder(tokenizer?.PadTokenId ?? 0, _options.MaxSequenceLength, _options.PadToMultipleOf);
        // packed rows are nearly full: padding every packed batch to MaxSequenceLength costs little and gives the attention kernels one shape
        // (each new length of a masked attention costs a new cuDNN plan on the GPU)
        var packedRows = new CausalLMBatchBuilder(tokenizer?.PadTokenId ?? 0, _options.MaxSequenceLength, _options.MaxSequenceLength);
        var packed = _options.PackSequences ? new PackedBatchBuilder(packedRows) : null;
        if (packed is not null) ch.Info(MessageSensitivity.None, "{0}", PackingSummary(corpus, rows, builder, packedRows));
        CausalLMBatch BatchOf(int[] batchRows) => packed is not null
            ? packed.Build(batchRows.Select(r => (IReadOnlyList<IReadOnlyList<int>>)rows[r].Select(d => corpus.Sequences[d]).ToList()).ToList())
            : builder.Build(batchRows.Select(r => (IReadOnlyList<int>)corpus.Sequences[rows[r][0]]).ToList()).Batch;
        var progress = new TrainingProgress(ch, pch, totalSteps, _options.LogEveryNStep);
        using var trainer = new CausalLMTrainer(executor, _options.ToTrainingOptions(totalSteps));
        var checkpointer = _options.CheckpointDirectory is null ? null : new TrainingCheckpointer(new TrainingCheckpointerOptions
        {
            Directory = _options.CheckpointDirectory, SaveEverySteps = _options.CheckpointEverySteps, KeepLast = _options.KeepCheckpoints,
            OnDamagedCheckpoints = _options.OnDamagedCheckpoints,
            Log = m => ch.Info(MessageSensitivity.None, "{0}", m),
        });
        var start = DataPosition.Start;
        if (checkpointer is not null && _options.ResumeFromCheckpoint && checkpointer.TryRestoreLatest(executor, trainer, out var restored))
        {
            start = restored;
            // this loop reaches batch b of epoch e after exactly e * stepsPerEpoch + b steps (and writes no cursor): any other position
            // is not of this run and data
            if (start.Cursor is not null || start.BatchIndex >= stepsPerEpoch || start.Epoch > _options.MaxEpochs
                || start.Epoch * stepsPerEpoch + start.BatchIndex != trainer.Step)
                throw new InvalidDataException($"The training checkpoint of step {trainer.Step} in '{_options.CheckpointDirectory}' says the next " +
                    $"batch is batch {start.BatchIndex} of epoch {start.Epoch}{(start.Cursor is null ? "" : $" (cursor '{start.Cursor}')")}, " +
                    $"which a run over this data ({n} rows, {stepsPerEpoch} steps per epoch) never reaches at that step: it is of another data set " +
                    "or options, or damaged. Use another CheckpointDirectory, or the data and options of the interrupted run.");
            ch.Info(MessageSensitivity.None, "{0}",
                $"Resumed from the training checkpoint of step {trainer.Step} (epoch {start.Epoch + 1}, step {start.BatchIndex + 1} of the epoch).");
        }
        if (packed is null && _options.PadToMultipleOf > 1 && _options.WarmUpLengthBuckets)
            WarmUp(trainer, builder, rows.Select(r => corpus.Sequences[r[0]]), ch);
        int rowsPerStep = _options.BatchSize * _options.GradientAccumulationSteps;
        using var best = _options.KeepBestByValidationLoss ? new BestWeights() : null;
        int savedStep = checkpointer is null ? -1 : trainer.Step; // the step of the newest checkpoint on disk (the resumed one, if any)
        var next = start;
        int lastValidated = -1;
        long lastEpoch = start.Epoch;
        void Validate(long epoch, bool epochEnd)
        {
            if (validation is null || validation.Rows == 0 || lastValidated == trainer.Step) return;
            lastValidated = trainer.Step;
            var result = new ValidationResult(trainer.Step, epoch + 1, validation.Loss(executor, cancellation), validation.Tokens, epochEnd);
            validations.Add(result);
            progress.ReportValidation(result);
            best?.Offer(executor, result.Loss, result.Step);
        }
        try
        {
            long epoch = start.Epoch;
            for (; epoch < _options.MaxEpochs && trainer.Step < totalSteps; epoch++)
            {
                ch.Trace(MessageSensitivity.None, "{0}", $"Starting epoch {epoch + 1}");
                // the order depends only on (seed, epoch), so a resumed run sees the rows the interrupted one would have
                var order = _options.Shuffle ? DataOrder.Permutation(n, _options.Seed, epoch) : Enumerable.Range(0, n).ToArray();
                var steps = order.Chunk(rowsPerStep).ToList();
                int b = epoch == start.Epoch ? (int)start.BatchIndex : 0;
                for (; b < steps.Count && trainer.Step < totalSteps; b++)
                {
                    cancellation.ThrowIfCanceled($"after step {trainer.Step} of {totalSteps}");
                    var clock = Stopwatch.StartNew();
                    using var scope = NewDisposeScope();
                    var batches = steps[b].Chunk(_options.BatchSize).Select(BatchOf).ToList();
                    var result = trainer.TrainStep(batches);
                    history.Add(result);
                    lastEpoch = epoch;
                    progress.Report(result, clock.Elapsed.TotalSeconds);
                    next = b + 1 < steps.Count ? new DataPosition(epoch, b + 1) : new DataPosition(epoch + 1, 0);
                    if (checkpointer?.SaveIfDue(executor, trainer, next) is not null) savedStep = trainer.Step;
                    if (_options.ValidationEveryNSteps > 0 && trainer.Step % _options.ValidationEveryNSteps == 0) Validate(epoch, epochEnd: false);
                }
                if (b == steps.Count) Validate(epoch, epochEnd: true);
                ch.Trace(MessageSensitivity.None, "{0}", $"Finished epoch {epoch + 1}");
            }
            Validate(lastEpoch, epochEnd: true); // after the last step (a no-op when the epoch end just validated)
        }
        catch (OperationCanceledException) when (cancellation.IsCanceled)
        {
            if (checkpointer is not null && trainer.Step > savedStep)
            {
                var folder = checkpointer.Save(executor, trainer, next);
                ch.Info(MessageSensitivity.None, "{0}", $"Cancelled after step {trainer.Step}: wrote the training checkpoint '{folder}'; a fit with the same " +
                    $"options resumes from it.");
            }
            else ch.Info(MessageSensitivity.None, "{0}", $"Cancelled after step {trainer.Step}.");
            throw;
        }
        if (best is not null && double.IsFinite(best.Loss))
        {
            best.Restore(executor);
            ch.Info(MessageSensitivity.None, "{0}", string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"Kept the weights of step {best.Step}, the lowest validation loss ({best.Loss:F4}); KeepBestByValidationLoss."));
        }
    }

    /// <summary>One forward and backward (no update) per batch width that length buckets give <paramref name="sequences"/> (WarmUpLengthBuckets).</summary>
    private void WarmUp(CausalLMTrainer trainer, CausalLMBatchBuilder builder, IEnumerable<int[]> sequences, IChannel ch)
    {
        var clock = Stopwatch.StartNew();
        var widths = sequences.GroupBy(s => builder.PaddedLength(s.Length)).OrderBy(g => g.Key).ToList();
        foreach (var width in widths)
        {
            using var scope = NewDisposeScope();
            var (batch, _) = builder.Build(Enumerable.Repeat((IReadOnlyList<int>)width.First(), _options.BatchSize).ToList());
            trainer.WarmUp(new[] { batch });
        }
        ch.Info(MessageSensitivity.None, "{0}", string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"WarmUpLengthBuckets: {widths.Count} batch width(s) ({string.Join(", ", widths.Select(w => w.Key))}) warmed up in " +
            $"{clock.Elapsed.TotalSeconds:F1} s."));
    }

    /// <summary>The log line of a packed run: documents, packed rows, and the padding of the first epoch's batches with and without packing.</summary>
    private string PackingSummary(TrainingCorpus corpus, int[][] packs, CausalLMBatchBuilder unpackedRows, CausalLMBatchBuilder packedRows)
    {
        int[] Order(int count) => _options.Shuffle ? DataOrder.Permutation(count, _options.Seed, 0) : Enumerable.Range(0, count).ToArray();
        var documentLengths = corpus.Sequences.Select(s => s.Length).ToArray();
        var packLengths = packs.Select(p => p.Sum(d => documentLengths[d])).ToArray();
        double unpacked = SequencePacker.PaddingFraction(Order(documentLengths.Length).Select(i => documentLengths[i]), _options.BatchSize,
            unpackedRows.PaddedLength);
        double withPacking = SequencePacker.PaddingFraction(Order(packs.Length).Select(i => packLengths[i]), _options.BatchSize, packedRows.PaddedLength);
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"PackSequences: {documentLengths.Length} rows ({corpus.Tokens} tokens) packed into {packs.Length} rows of up to " +
            $"{_options.MaxSequenceLength} tokens; padding {100 * withPacking:F1}% of the batch tokens instead of {100 * unpacked:F1}% unpacked " +
            $"(batches of {_options.BatchSize}, first epoch).");
    }

    private Qwen3MoeForCausalLMParameters WithPipelineLayout(Qwen3MoeForCausalLMParameters p) =>
        _options.NumberOfVirtualLayersPre == 0 && _options.NumberOfVirtualLayersPost == 0
            ? p
            : p with { Model = p.Model with
                { PipelineNumVirtualLayersPre = _options.NumberOfVirtualLayersPre, PipelineNumVirtualLayersPost = _options.NumberOfVirtualLayersPost } };

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
