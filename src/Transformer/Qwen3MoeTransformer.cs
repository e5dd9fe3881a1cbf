using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Lora;
using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Qwen3Moe.Runtime;
using Microsoft.ML.Qwen3Moe.Scoring;
using Microsoft.ML.Qwen3Moe.Tokenization;
using Microsoft.ML.Qwen3Moe.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// A (fine-tuned) Qwen3-MoE causal language model as an ML.NET transformer. It adds four columns per row: the
/// log-probability of every token given the ones before it, the token count, the mean log-probability and the
/// perplexity. Rows are scored in padded, masked batches on the forward-only path; <c>PredictionEngine</c> scores one
/// row at a time. Saved with <c>mlContext.Model.Save</c> as one self-contained zip (config, tokenizer and weights
/// inside). Holds native memory: dispose it when done.
/// </summary>
public sealed class Qwen3MoeTransformer : ITransformer, IDisposable
{
    private readonly IHost _host;
    private readonly StagedModel _model;
    private readonly TokenizerSource? _tokenizerSource;
    private readonly Qwen3MoeScoringOptions _options;
    private readonly ScoreColumns _columns;
    private readonly BatchScorer _scorer;
    private Qwen3TextGenerator? _textGenerator;
    private readonly BaseModelReference? _baseModel;
    private bool _disposed;

    /// <summary>Wraps a trained (or loaded) model; takes ownership of it (its stages and executor).</summary>
    internal Qwen3MoeTransformer(IHostEnvironment env, StagedModel model, TokenizerSource? tokenizerSource,
        Qwen3Tokenizer? tokenizer, Qwen3MoeScoringOptions options, IReadOnlyList<TrainStepResult>? trainingHistory = null,
        IReadOnlyList<ValidationResult>? validationHistory = null, BaseModelReference? baseModel = null)
    {
        if (model.Stages[0].Lora is not null && baseModel is null) throw new ArgumentException("A LoRA model needs the reference of its base model folder.",
            nameof(baseModel));
        options.Validate();
        if (tokenizer is null && options.TokenIdsColumnName is null)
            throw new ArgumentException("The model has no tokenizer, so it can only read token ids: set TokenIdsColumnName, or give a tokenizer folder.",
                nameof(tokenizer));
        _host = env.Register(nameof(Qwen3MoeTransformer));
        _model = model;
        _tokenizerSource = tokenizerSource;
        Tokenizer = tokenizer;
        _options = options.CloneScoring();
        _columns = new ScoreColumns(_options);
        // rows are cut to what the options allow and the model can place (its rotary positions), never rejected
        _scorer = new BatchScorer(model.Executor, tokenizer?.PadTokenId ?? 0, Math.Min(_options.MaxSequenceLength,
            model.Stages[0].Parameters.Model.MaxPositionIds), _options.PadToMultipleOf);
        TrainingHistory = trainingHistory ?? Array.Empty<TrainStepResult>();
        _baseModel = model.Stages[0].Lora is null ? null : baseModel;
        ValidationHistory = validationHistory ?? Array.Empty<ValidationResult>();
        Qwen3MoeModelFile.TryRegister(env);
    }

    /// <summary>Whether the model is a frozen base plus LoRA adapters (<see cref="ExportAdapter"/>; its ML.NET zip refers to <see
    /// cref="BaseModelPath"/>).</summary>
    public bool HasAdapters => _model.Stages[0].Lora is not null;

    /// <summary>The base model folder of a LoRA model; null otherwise.</summary>
    public string? BaseModelPath => _baseModel?.Path;

    /// <summary>The fingerprint of the base folder of a LoRA model.</summary>
    internal BaseModelReference? BaseModel => _baseModel;

    internal Qwen3MoeForCausalLM[] Stages => _model.Stages;

    internal TokenizerSource? TokenizerFiles => _tokenizerSource;

    /// <summary>Always true: the transformer maps rows one to one, so <c>PredictionEngine</c> works.</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>The architecture (Hugging Face config) of the model.</summary>
    public Qwen3MoeForCausalLMParameters ModelParameters => _model.Stages[0].Parameters;

    /// <summary>The tokenizer, or null for a model that reads token ids only.</summary>
    public Qwen3Tokenizer? Tokenizer { get; }

    /// <summary>The scoring settings (columns, max length, batch, precision); a copy.</summary>
    public Qwen3MoeScoringOptions ScoringOptions => _options.CloneScoring();

    /// <summary>What each optimizer step of the fit did (loss, learning rate, tokens...); empty for a loaded model.</summary>
    public IReadOnlyList<TrainStepResult> TrainingHistory { get; }

    /// <summary>The validation passes of the fit (<c>Options.ValidationSet</c>), in order; empty without a validation set or for a loaded model.</summary>
    public IReadOnlyList<ValidationResult> ValidationHistory { get; }

    /// <summary>
    /// How the MoE routers spread the tokens over the experts during the last scoring pass (the last cursor opened by
    /// <see cref="Transform"/>'s result, or the rows scored since the last <see cref="GetRowToRowMapper"/>).
    /// </summary>
    public MoeRoutingStatistics LastRoutingStatistics => _scorer.RoutingStatistics();

    /// <summary><c>eos_token_id</c> of the model folder's <c>generation_config.json</c> (loaded from Hugging Face); empty otherwise.</summary>
    internal IReadOnlyList<int> GenerationEosTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>
    /// Text generation with this model (KV cache, sampling, chat template); stops by default at the tokenizer's EOS,
    /// <c>&lt;|im_end|&gt;</c>, <c>&lt;|endoftext|&gt;</c> and the ids of <c>generation_config.json</c> when the model was loaded from a folder with one.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model has no tokenizer.</exception>
    public Qwen3TextGenerator TextGenerator
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var tokenizer = Tokenizer
                ?? throw new InvalidOperationException("The model has no tokenizer: generate from token ids with CausalLMGenerator instead.");
            return _textGenerator ??= new Qwen3TextGenerator(_model.Stages, tokenizer, Qwen3TextGenerator.DefaultEosTokenIds(tokenizer, GenerationEosTokenIds));
        }
    }

    /// <summary>A transformer that adds a completion column to a prompt column with this model (see <see cref="Qwen3MoeGenerationTransformer"/>).</summary>
    /// <exception cref="ArgumentException">Invalid options; the message names the option.</exception>
    public Qwen3MoeGenerationTransformer Generate(Qwen3MoeGenerationOptions? options = null) => new(TextGenerator, options ?? new Qwen3MoeGenerationOptions());

    /// <summary>The input schema plus the four score columns.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The input column is missing or of the wrong type.</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        InputColumn.Resolve(inputSchema, _options);
        return _columns.OutputSchema(inputSchema);
    }

    /// <summary>Adds the score columns to <paramref name="input"/> (lazily: rows are scored in batches as they are read).</summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var source = InputColumn.Resolve(input.Schema, _options);
        return new ScoredDataView(input, source, _columns, _scorer, Tokenizer, _options.ScoringBatchSize);
    }

    /// <summary>A row-at-a-time mapper (used by <c>PredictionEngine</c>).</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var source = InputColumn.Resolve(inputSchema, _options);
        _scorer.BeginPass();
        return new ScoringRowMapper(inputSchema, source, _columns, _scorer, Tokenizer);
    }

    /// <summary>
    /// Writes the model as a Hugging Face folder (<c>config.json</c>, safetensors with per-expert keys, and the tokenizer
    /// files) that this library's loader and Hugging Face transformers read back identically. Replaces the folder atomically.
    /// A LoRA model is exported with its adapters merged into the base weights (<paramref name="merge"/> must be true); the
    /// model itself keeps its adapters (the base weights are reloaded from the base folder afterwards).
    /// </summary>
    /// <param name="folder">The folder to write.</param>
    /// <param name="merge">Merge LoRA adapters into the exported weights (required for a LoRA model; ignored otherwise).</param>
    /// <exception cref="InvalidOperationException">A LoRA model without <paramref name="merge"/>.</exception>
    public void ExportHuggingFace(string folder, bool merge = false)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ObjectDisposedException.ThrowIf(_disposed, this);
        // the tokenizer files go into the same atomic folder swap as the weights and config
        var tokenizerFiles = _tokenizerSource?.Files.ToDictionary(f => f.Key, f => System.Text.Encoding.UTF8.GetString(f.Value));
        if (!HasAdapters)
        {
            HuggingFaceCheckpoint.Save(_model.Stages, folder, extraTextFiles: tokenizerFiles);
            return;
        }
        if (!merge) throw new InvalidOperationException("This model has LoRA adapters: export them with ExportAdapter(folder), or a full model with " +
            "ExportHuggingFace(folder, merge: true).");
        _baseModel!.Verify(); // the restore below reloads it
        try
        {
            foreach (var s in _model.Stages) s.Lora!.MergeIntoBase();
            HuggingFaceCheckpoint.Save(_model.Stages, folder, extraTextFiles: tokenizerFiles);
        }
        finally
        {
            foreach (var s in _model.Stages) s.Lora!.RestoreBase(_baseModel.Path);
        }
    }

    /// <summary>
    /// Writes a LoRA model's adapters as a Hugging Face PEFT folder (<c>adapter_config.json</c> +
    /// <c>adapter_model.safetensors</c>, as PEFT 0.21 writes them; <c>base_model_name_or_path</c> is the base folder).
    /// Replaces the folder atomically.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model has no adapters.</exception>
    public void ExportAdapter(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!HasAdapters) throw new InvalidOperationException("This model has no LoRA adapters to export (it was fine-tuned with FineTuning = Full): use " +
            "ExportHuggingFace.");
        PeftAdapter.Save(_model.Stages, folder, _baseModel!.Path);
    }

    /// <summary>Saves into an ML.NET model zip (called by <c>mlContext.Model.Save</c>).</summary>
    /// <exception cref="NotSupportedException">This ML.NET version lacks a model-file member this library needs (nothing is written).</exception>
    void ICanSaveModel.Save(ModelSaveContext ctx) => Qwen3MoeModelFile.Save(this, ctx);

    /// <summary>Frees the model's native memory. The transformer cannot be used afterwards.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _model.Dispose();
    }

    /// <summary>
    /// Loads a Hugging Face folder (weights and config; tokenizer from <paramref name="tokenizerFolder"/>, default the same
    /// folder) and, with <paramref name="adapterFolder"/>, applies that PEFT adapter (base fingerprint <paramref name="baseModel"/>, or taken now).
    /// </summary>
    internal static Qwen3MoeTransformer FromHuggingFace(IHostEnvironment env, string folder, Qwen3MoeScoringOptions options, string? tokenizerFolder = null,
        string? adapterFolder = null, BaseModelReference? baseModel = null)
    {
        options.Validate();
        var parameters = HuggingFaceConfig.Load(folder);
        var generationEos = Generation.GenerationConfig.ReadEosTokenIds(folder);
        TokenizerSource? source = null;
        Qwen3Tokenizer? tokenizer = null;
        var tokFolder = tokenizerFolder ?? folder;
        if (tokenizerFolder is not null || TokenizerSource.Exists(tokFolder)) (source, tokenizer) = TokenizerSource.Load(tokFolder);
        else if (options.TokenIdsColumnName is null)
            throw new FileNotFoundException($"'{folder}' has no tokenizer (tokenizer.json, or vocab.json + merges.txt): give a tokenizer folder, or set " +
                $"TokenIdsColumnName to score token ids.");
        if (tokenizer is not null) VocabularyCheck.Ensure(tokenizer, tokFolder, parameters, folder);
        var (device, warning) = DevicePolicy.Resolve(env);
        if (warning is not null) Warn(env, warning);
        if (adapterFolder is not null) baseModel ??= BaseModelReference.Of(folder);
        var model = StagedModel.Build(parameters, folder, 0, new[] { device }, options.Precision.ToScalarType());
        try
        {
            if (adapterFolder is not null) PeftAdapter.Load(model.Stages, adapterFolder);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return new Qwen3MoeTransformer(env, model, source, tokenizer, options, baseModel: baseModel)
        {
            GenerationEosTokenIds = generationEos,
        };
    }

    /// <summary>
    /// A new model with seeded random weights (<see cref="Qwen3MoeForCausalLM.InitializeWeights"/>) and the tokenizer
    /// of <paramref name="tokenizerFolder"/>.
    /// </summary>
    internal static Qwen3MoeTransformer
        FromParameters(IHostEnvironment env, Qwen3MoeForCausalLMParameters parameters, string tokenizerFolder, long seed, Qwen3MoeScoringOptions options)
    {
        options.Validate();
        var (source, tokenizer) = TokenizerSource.Load(tokenizerFolder);
        VocabularyCheck.Ensure(tokenizer, tokenizerFolder, parameters, null);
        var (device, warning) = DevicePolicy.Resolve(env);
        if (warning is not null) Warn(env, warning);
        return new Qwen3MoeTransformer(env, StagedModel.Build(parameters, null, seed, new[] { device }, options.Precision.ToScalarType()), source, tokenizer,
            options);
    }

    internal static void Warn(IHostEnvironment env, string message)
    {
        using var ch = env.Register(nameof(Qwen3MoeTransformer)).Start("Warning");
        ch.Warning(MessageSensitivity.None, "{0}", message);
    }
}
