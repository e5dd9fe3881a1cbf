using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Persistence;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Entry points for Qwen3-MoE language models in an <see cref="MLContext"/>: <c>mlContext.Qwen3Moe()</c>. (ML.NET's
/// catalogs keep their environment internal, so this catalog hangs off the context itself.) Requires the libtorch
/// native package of the target (e.g. libtorch-cpu-linux-x64, or a CUDA build for GPUs).
/// </summary>
public sealed class Qwen3MoeCatalog
{
    private readonly MLContext _context;

    internal Qwen3MoeCatalog(MLContext context)
    {
        _context = context;
        Qwen3MoeModelFile.TryRegister(context);
    }

    /// <summary>Fine-tunes a Qwen3-MoE model on a text column (next-token prediction) and gives a scoring transformer.</summary>
    /// <param name="modelPath">Hugging Face model folder to start from (config.json, safetensors; tokenizer files unless
    /// <paramref name="tokenizerPath"/>).</param>
    /// <param name="textColumnName">Text column to train on and to score. Same default as <see cref="Qwen3MoeScoringOptions.TextColumnName"/>.</param>
    /// <param name="tokenizerPath">Tokenizer folder; null for <paramref name="modelPath"/>.</param>
    /// <param name="batchSize">Rows per forward/backward pass.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak AdamW learning rate.</param>
    /// <param name="maxSequenceLength">Most tokens per row (longer rows are truncated).</param>
    public Qwen3MoeEstimator FineTune(string modelPath, string textColumnName = "Text", string? tokenizerPath = null, int batchSize = 8, int maxEpochs = 1,
        double learningRate = 1e-4, int maxSequenceLength = 512) =>
        FineTune(new Qwen3MoeEstimator.Options
        {
            ModelPath = modelPath,
            TextColumnName = textColumnName,
            TokenizerPath = tokenizerPath,
            BatchSize = batchSize,
            MaxEpochs = maxEpochs,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength,
        });

    /// <summary>Fine-tunes a Qwen3-MoE model with every setting given by <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An invalid option; the message names it.</exception>
    public Qwen3MoeEstimator FineTune(Qwen3MoeEstimator.Options options) => new(_context, options);

    /// <summary>A ready scoring transformer for a Hugging Face model folder (no training).</summary>
    /// <param name="modelPath">Hugging Face model folder (config.json, safetensors and, unless <paramref name="tokenizerPath"/>, tokenizer files).</param>
    /// <param name="textColumnName">Text column to score.</param>
    /// <param name="tokenizerPath">Tokenizer folder; null for <paramref name="modelPath"/>.</param>
    /// <param name="maxSequenceLength">Most tokens scored per row.</param>
    /// <param name="adapterPath">A Hugging Face PEFT LoRA adapter folder to apply to the model; null for none.</param>
    public Qwen3MoeTransformer LoadHuggingFace(string modelPath, string textColumnName = "Text", string? tokenizerPath = null, int maxSequenceLength = 512,
        string? adapterPath = null) =>
        LoadHuggingFace(modelPath, new Qwen3MoeScoringOptions { TextColumnName = textColumnName, MaxSequenceLength = maxSequenceLength }, tokenizerPath,
            adapterPath);

    /// <summary>A ready scoring transformer for a Hugging Face model folder, with the scoring settings of <paramref name="options"/>.</summary>
    /// <exception cref="FileNotFoundException">No config.json, or no tokenizer while text is to be scored.</exception>
    /// <exception cref="FormatException">A malformed or unsupported config.json.</exception>
    /// <param name="modelPath">Hugging Face model folder (the base, with <paramref name="adapterPath"/>).</param>
    /// <param name="options">Scoring settings.</param>
    /// <param name="tokenizerPath">Tokenizer folder; null for <paramref name="modelPath"/>.</param>
    /// <param name="adapterPath">A Hugging Face PEFT LoRA adapter folder (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>) to apply; null for
    /// none.</param>
    /// <exception cref="InvalidDataException">A missing, unexpected or mis-shaped weight tensor (model or adapter).</exception>
    /// <exception cref="NotSupportedException">The adapter uses a PEFT feature this library does not implement.</exception>
    public Qwen3MoeTransformer LoadHuggingFace(string modelPath, Qwen3MoeScoringOptions options, string? tokenizerPath = null, string? adapterPath = null)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        ArgumentNullException.ThrowIfNull(options);
        return Qwen3MoeTransformer.FromHuggingFace(_context, modelPath, options, tokenizerPath, adapterPath);
    }

    /// <summary>
    /// Saves <paramref name="model"/> (a Qwen3-MoE transformer, or any ML.NET chain holding one) as an ML.NET model zip
    /// that <c>mlContext.Model.Load</c> reads, <b>atomically</b>: the zip is written to a hidden temp file beside
    /// <paramref name="filePath"/> (<c>.name.pid-guid.tmp</c>), flushed to disk, renamed over the target, and the folder
    /// flushed. A kill, a full disk or any error at any moment leaves the previous file intact (or no file), never a
    /// partial zip; temp files of killed saves are removed by the next save to the same path.
    /// </summary>
    /// <remarks>
    /// Prefer this to ML.NET's <c>mlContext.Model.Save(model, schema, filePath)</c> for large models: ML.NET opens the
    /// target with <c>File.Create</c>, which truncates the old zip before any model code runs, so a kill or a full disk
    /// during that call loses the old model and leaves a partial zip. Nothing inside the model's own save can prevent
    /// that. Both write the same zip format.
    /// </remarks>
    /// <param name="model">The model to save.</param>
    /// <param name="inputSchema">The schema of the model's input (may be null, as for ML.NET).</param>
    /// <param name="filePath">The zip to create or replace.</param>
    /// <exception cref="IOException">Writing failed (e.g. the disk is full); the previous file is unchanged.</exception>
    public void SaveModel(ITransformer model, DataViewSchema? inputSchema, string filePath) =>
        ModelZipWriter.Save(_context, model, inputSchema, filePath);

    /// <summary>
    /// A new Qwen3-MoE with seeded random weights (Hugging Face's initialisation) and the tokenizer of
    /// <paramref name="tokenizerPath"/>: a baseline to score before fine-tuning a new model with the same
    /// <see cref="Qwen3MoeEstimator.Options.NewModel"/> and <see cref="Qwen3MoeEstimator.Options.Seed"/>.
    /// </summary>
    public Qwen3MoeTransformer
        CreateRandom(Qwen3MoeForCausalLMParameters parameters, string tokenizerPath, int seed = 1, Qwen3MoeScoringOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(tokenizerPath);
        return Qwen3MoeTransformer.FromParameters(_context, parameters, tokenizerPath, seed, options ?? new Qwen3MoeScoringOptions());
    }

    /// <summary>
    /// Evaluates a scored data view (the output of a Qwen3-MoE transformer's <c>Transform</c>): token-weighted mean
    /// negative log-likelihood, corpus perplexity, tokens and rows, and bits per UTF-8 byte of the text.
    /// </summary>
    /// <param name="data">Scored data: a log-probabilities column (vector of Single) and, for bits per byte, the text column.</param>
    /// <param name="logProbabilitiesColumnName">The per-token log-probabilities column. Same default as <see
    /// cref="Qwen3MoeScoringOptions.LogProbabilitiesColumnName"/>.</param>
    /// <param name="textColumnName">The text column the scores were computed from, for <see cref="Qwen3MoeMetrics.BitsPerByte"/>; null to leave bits per byte
    /// out (NaN), as for token-id input.</param>
    /// <exception cref="ArgumentOutOfRangeException">A column is missing or of the wrong type (ML.NET's schema messages).</exception>
    public Qwen3MoeMetrics Evaluate(IDataView data, string logProbabilitiesColumnName = "LogProbabilities", string? textColumnName = "Text") =>
        Evaluation.Qwen3MoeEvaluator.Evaluate(data, logProbabilitiesColumnName, textColumnName);

    /// <summary>
    /// Registers the Qwen3-MoE loader in this context and loads a model zip saved with <c>mlContext.Model.Save</c>, in
    /// one call (a plain <c>mlContext.Model.Load</c> in a fresh context needs <c>ComponentCatalog.RegisterQwen3Moe()</c>
    /// first, or fails with ML.NET's "Couldn't load model"). The result is ML.NET's <c>TransformerChain</c>; disposing it
    /// (<c>(loaded as IDisposable)?.Dispose()</c>) disposes the Qwen3-MoE transformer inside and frees its native memory.
    /// </summary>
    /// <param name="modelPath">The .zip written by <c>mlContext.Model.Save</c>.</param>
    /// <param name="inputSchema">The input schema saved with the model.</param>
    /// <exception cref="NotSupportedException">The ML.NET in use is not the version this library supports.</exception>
    public ITransformer LoadModel(string modelPath, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        _context.ComponentCatalog.RegisterQwen3Moe();
        return _context.Model.Load(modelPath, out inputSchema);
    }

    /// <summary>Registers the Qwen3-MoE loader in this context and loads a model zip from a stream (see <see cref="LoadModel(string, out
    /// DataViewSchema)"/>).</summary>
    /// <param name="stream">A readable, seekable stream holding the zip.</param>
    /// <param name="inputSchema">The input schema saved with the model.</param>
    /// <exception cref="NotSupportedException">The ML.NET in use is not the version this library supports.</exception>
    public ITransformer LoadModel(Stream stream, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _context.ComponentCatalog.RegisterQwen3Moe();
        return _context.Model.Load(stream, out inputSchema);
    }
}
