using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Pipelining;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Qwen3-MoE causal language model for one pipeline stage: the <see cref="Qwen3MoeModel"/> backbone plus, on the last
/// stage, the (split) LM head. Numerics follow Hugging Face transformers' <c>Qwen3MoeForCausalLM</c>.
/// </summary>
public sealed class Qwen3MoeForCausalLM : nn.Module<CausalLMBatch, CausalLMOutput>
{
    internal Qwen3MoeModel model;
    internal SplitLanguageModellingHead? lm_head;

    /// <summary>
    /// Builds the stage on <paramref name="device"/> in <paramref name="dtype"/> (default: CPU, float32). Weights are
    /// uninitialised: load a checkpoint, or call <see cref="ResetParameters"/> or <see cref="InitializeWeights"/>.
    /// </summary>
    /// <param name="parameters">The model parameters.</param>
    /// <param name="stage">The pipeline stage to build; null for the whole model.</param>
    /// <param name="device">Target device (default CPU).</param>
    /// <param name="dtype">Parameter dtype (default float32).</param>
    /// <param name="hiddenStatesSnapshotMode">What to collect from intermediate hidden states (default nothing).</param>
    /// <param name="enableCheckpointing">Whether each decoder layer is recomputed in the backward pass (see <see cref="EnableCheckpointing"/>).</param>
    /// <param name="kernels">Kernel choices (default <see cref="KernelOptions.Default"/>, the fastest measured).</param>
    /// <exception cref="ArgumentOutOfRangeException">Invalid parameters, or sizes beyond <see cref="ConfigLimits"/>; the message names the field.</exception>
    /// <exception cref="InsufficientMemoryException">The stage's weights need more memory than the device has (CPU); the message gives both.</exception>
    public Qwen3MoeForCausalLM(Qwen3MoeForCausalLMParameters parameters, PipelineStageInfo? stage = null, Device? device = null,
        ScalarType dtype = ScalarType.Float32,
        HiddenStatesAggregationMode hiddenStatesSnapshotMode = HiddenStatesAggregationMode.No, bool enableCheckpointing = false, KernelOptions? kernels = null)
        : base(nameof(Qwen3MoeForCausalLM))
    {
        parameters.Validate();
        Parameters = parameters;
        var st = stage ?? PipelineStageInfo.Single;
        if (parameters.TieWordEmbeddings && st.NumStages > 1)
            throw new NotSupportedException("tie_word_embeddings with more than one pipeline stage is not supported: the embedding and the head would live " +
                "on different stages.");
        ModelMemory.CheckFits(parameters, st, device, dtype); // before any allocation: an oversized config fails here, not in native code
        model = new Qwen3MoeModel(parameters.Model, st, device, dtype, hiddenStatesSnapshotMode, enableCheckpointing, kernels);
        var m = parameters.Model;
        Func<Parameter>? tied = parameters.TieWordEmbeddings ? () => model.embed_tokens!.Weight(m.SplitVocabOrder[0]) : null;
        if (st.IsLast) lm_head = new SplitLanguageModellingHead(m.Layer.HiddenSize, m.SplitVocabSize, m.SplitVocabOrder, device, dtype, tied, model.Kernels);
        RegisterComponents();
    }

    /// <summary>The LoRA adapters attached to this stage (<see cref="Lora.LoraAdapters.Attach(Qwen3MoeForCausalLM, Lora.LoraOptions)"/>), or null.</summary>
    public Lora.LoraAdapters? Lora
    {
        get => model.Lora;
        internal set => model.Lora = value;   // the backbone's decode path asks it which layers are adapted
    }

    /// <summary>The parameters this model was built from.</summary>
    public Qwen3MoeForCausalLMParameters Parameters { get; }

    /// <summary>The backbone.</summary>
    public Qwen3MoeModel Model => model;

    /// <summary>The stage this module was built for.</summary>
    public PipelineStageInfo Stage => model.Stage;

    /// <summary>
    /// Whether each decoder layer is recomputed in the backward pass instead of keeping its activations
    /// (<see cref="Qwen3MoeModel.EnableCheckpointing"/>).
    /// </summary>
    public bool EnableCheckpointing
    {
        get => model.EnableCheckpointing;
        set => model.EnableCheckpointing = value;
    }

    /// <summary>
    /// Token rows per chunk of the per-token loss: the head's working memory is about 2 · this · vocab · 4 bytes, plus the
    /// kept logits in training (<see cref="KernelOptions.LossLogitsBudgetBytes"/>). Default 1024.
    /// </summary>
    public long LossChunkTokens
    {
        get => lm_head?.ChunkTokens ?? 0;
        set
        {
            if (value <= 0) throw new ArgumentOutOfRangeException(nameof(value), value, "LossChunkTokens must be positive.");
            if (lm_head is not null) lm_head.ChunkTokens = value;
        }
    }

    /// <summary>int64 [local sparse layers, E]: top-k choices per expert since the last <see cref="ResetMoeStats"/>.</summary>
    public Tensor MoeTokensPerExpert => model.MoeTokensPerExpert;

    /// <summary>Zeroes the MoE statistics.</summary>
    public void ResetMoeStats() => model.ResetMoeStats();

    /// <summary>Sets the MoE statistics to <paramref name="counts"/>, as <see cref="MoeTokensPerExpert"/> returned them.</summary>
    internal void RestoreMoeStats(Tensor counts) => model.RestoreMoeStats(counts);

    /// <summary>The device of the parameters.</summary>
    public Device Device => parameters().First().device;

    /// <summary>The dtype of the parameters.</summary>
    public ScalarType DType => parameters().First().dtype;

    /// <summary>
    /// Distinct trainable parameters (a tied head shares the embedding table; it is listed once, so an optimizer never
    /// updates it twice).
    /// </summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> UniqueNamedParameters()
    {
        var seen = new HashSet<IntPtr>();
        return named_parameters().Where(np => seen.Add(np.parameter.Handle)).Select(np => (np.name, np.parameter)).ToList();
    }

    /// <summary>
    /// Runs the stage: hidden states, router logits and, on the last stage, per-token NLL (with labels) and logits (when
    /// asked). Token ids and labels must lie in the vocabulary: an <see cref="Execution.IStepExecutor"/> checks their range
    /// once, on the host, where a batch enters it; this forward checks shapes and dtypes only (it never reads a device).
    /// </summary>
    /// <exception cref="ArgumentException">An empty batch, or tensors of the wrong rank, dtype or shape; the message names them.</exception>
    public override CausalLMOutput forward(CausalLMBatch batch)
    {
        CausalLMBatchCheck.Structure(batch);
        using var scope = NewDisposeScope();
        var trunk = model.forward(batch);
        if (lm_head is null) return MoveOut(trunk);
        var tokenNll = batch.Labels is null ? null : lm_head.PerTokenNll(trunk.HiddenStates, batch.Labels);
        var logits = batch.ReturnLogits ? lm_head.forward(trunk.HiddenStates) : null;
        return MoveOut(new CausalLMOutput
        {
            HiddenStates = trunk.HiddenStates,
            RouterLogits = trunk.RouterLogits,
            AllHiddenStates = trunk.AllHiddenStates,
            HiddenStatesSnapshot = trunk.HiddenStatesSnapshot,
            TokenNll = tokenNll,
            Logits = logits,
        });
    }

    private static CausalLMOutput MoveOut(CausalLMOutput o)
    {
        o.HiddenStates.MoveToOuterDisposeScope();
        o.Logits?.MoveToOuterDisposeScope();
        o.TokenNll?.MoveToOuterDisposeScope();
        o.HiddenStatesSnapshot?.MoveToOuterDisposeScope();
        foreach (var t in o.RouterLogits) t.MoveToOuterDisposeScope();
        foreach (var t in o.AllHiddenStates ?? Array.Empty<Tensor>()) t.MoveToOuterDisposeScope();
        return o;
    }

    /// <summary>
    /// Fills every weight as HF does for a fresh model (normal(0, initializer_range) for projections, experts, router and
    /// embeddings; zeros for biases; ones for norms), reproducibly from <paramref name="seed"/> on any device. Each
    /// parameter draws from its own generator seeded by (seed, name), so a model split into pipeline stages gets exactly
    /// the weights of the unsplit model. On CUDA the values come from the device's generator (they differ from the CPU
    /// ones) and the devices' default CUDA generators are left reseeded.
    /// </summary>
    public void InitializeWeights(long seed)
    {
        using var _ = no_grad();
        double std = Parameters.InitializerRange;
        foreach (var (name, p) in UniqueNamedParameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.fill_(Scalars.OneF);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else ParameterInitializer.Seeded(seed, name, p.device, g => p.normal_(0, std, g));
        }
        ResetMoeStats();
    }

    /// <summary>
    /// Late initialisation as the seed's <c>reset_parameters</c> (PyTorch defaults, not HF's normal(0, 0.02)): embeddings
    /// N(0,1); attention, router, experts and head U(±1/√in); norms ones; MoE statistics zero. With
    /// <paramref name="seed"/>, each parameter draws from its own generator keyed by (seed, name), so the result is
    /// reproducible and the same whatever the pipeline split; without, the global generator (<c>torch.manual_seed</c>) is
    /// used in module order.
    /// </summary>
    public void ResetParameters(long? seed = null)
    {
        var init = new ParameterInitializer(this, seed);
        model.ResetParameters(init.Scope(nameof(model)));
        lm_head?.ResetParameters(init.Scope(nameof(lm_head)));
    }

    /// <summary>
    /// What this stage receives for one micro-batch (the seed's <c>infer_stage_inputs_from_pipeline_inputs</c>; see
    /// <see cref="Qwen3MoeModel.InferStageInputs"/>).
    /// </summary>
    public IReadOnlyDictionary<string, StageTensorSpec> InferStageInputs(IReadOnlyList<long> inputIdsShape, int microBatches) =>
        model.InferStageInputs(inputIdsShape, microBatches);

    /// <summary>
    /// What this stage produces for one micro-batch: the backbone's outputs plus, on the last stage, <c>logps</c> float32
    /// [b,S]. (The seed gives logps the global [B,S] shape; here every entry is per micro-batch.)
    /// </summary>
    public IReadOnlyDictionary<string, StageTensorSpec> InferStageOutputs(IReadOnlyList<long> inputIdsShape, int microBatches)
    {
        var specs = new Dictionary<string, StageTensorSpec>(model.InferStageOutputs(inputIdsShape, microBatches));
        var (b, s) = Qwen3MoeModel.MicroBatchShape(inputIdsShape, microBatches);
        if (Stage.IsLast) specs[StageTensorNames.TokenNll] = new(new[] { b, s }, ScalarType.Float32);
        return specs;
    }
}
