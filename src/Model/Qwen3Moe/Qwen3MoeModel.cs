using System.Globalization;
using Microsoft.ML.Qwen3Moe.Autograd;
using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Pipelining;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// The Qwen3-MoE backbone for one pipeline stage: token embeddings on the first stage, the stage's decoder layers
/// (keyed by global index, so a stage's state dict is a slice of the full one) and the final norm on the last stage.
/// </summary>
public sealed class Qwen3MoeModel : nn.Module<CausalLMBatch, CausalLMOutput>
{
    private readonly Qwen3MoeParameters _p;
    private readonly RotaryEmbedding _rope;

    internal SplitTokenEmbeddings? embed_tokens;
    internal ModuleDict<Qwen3MoeLayer> layers;
    internal RmsNorm? norm;

    /// <summary>
    /// Builds the stage's modules on <paramref name="device"/> in <paramref name="dtype"/>; weights are uninitialised
    /// until loaded, <see cref="ResetParameters(long?)"/> or <see cref="Qwen3MoeForCausalLM.InitializeWeights"/>.
    /// </summary>
    /// <param name="parameters">The backbone parameters.</param>
    /// <param name="stage">The pipeline stage to build.</param>
    /// <param name="device">Target device (default CPU).</param>
    /// <param name="dtype">Parameter dtype (default float32).</param>
    /// <param name="hiddenStatesSnapshotMode">What to collect from intermediate hidden states (default nothing).</param>
    /// <param name="enableCheckpointing">Whether each decoder layer is recomputed in the backward pass instead of keeping its activations.</param>
    /// <param name="kernels">Kernel choices (default <see cref="KernelOptions.Default"/>, the fastest measured).</param>
    public Qwen3MoeModel(Qwen3MoeParameters parameters, PipelineStageInfo stage, Device? device = null, ScalarType dtype = ScalarType.Float32,
        HiddenStatesAggregationMode hiddenStatesSnapshotMode = HiddenStatesAggregationMode.No, bool enableCheckpointing = false, KernelOptions? kernels = null)
        : base(nameof(Qwen3MoeModel))
    {
        parameters.Validate();
        _p = parameters;
        Kernels = kernels ?? KernelOptions.Default;
        Stage = stage;
        HiddenStatesSnapshotMode = hiddenStatesSnapshotMode;
        EnableCheckpointing = enableCheckpointing;
        (FirstLayer, EndLayer) = LayerDistribution.DistributeLayersForPipelineStage(
            parameters.NumHiddenLayers, parameters.PipelineNumVirtualLayersPre, parameters.PipelineNumVirtualLayersPost, stage);
        var l = parameters.Layer;
        if (stage.IsFirst) embed_tokens = new SplitTokenEmbeddings(l.HiddenSize, parameters.SplitVocabSize, parameters.SplitVocabOrder, device, dtype);
        layers = new ModuleDict<Qwen3MoeLayer>();
        for (int i = FirstLayer; i < EndLayer; i++)
            layers.Add((i.ToString(CultureInfo.InvariantCulture), new Qwen3MoeLayer(l, i, parameters.IsSparseLayer(i), device, dtype, Kernels)));
        if (stage.IsLast) norm = new RmsNorm(l.HiddenSize, l.RmsNormEps, device, dtype, Kernels.FusedRmsNorm);
        _rope = new RotaryEmbedding(l.HeadDim, parameters.RopeBase);
        RegisterComponents();
    }

    /// <summary>The backbone parameters.</summary>
    public Qwen3MoeParameters Parameters => _p;

    /// <summary>The stage this module was built for.</summary>
    public PipelineStageInfo Stage { get; }

    /// <summary>The kernel choices this module was built with.</summary>
    public KernelOptions Kernels { get; }

    /// <summary>First global layer index owned by this stage.</summary>
    public int FirstLayer { get; }

    /// <summary>One past the last global layer index owned by this stage.</summary>
    public int EndLayer { get; }

    /// <summary>What <see cref="CausalLMOutput.HiddenStatesSnapshot"/> collects.</summary>
    public HiddenStatesAggregationMode HiddenStatesSnapshotMode { get; }

    /// <summary>
    /// Whether each decoder layer is checkpointed: its forward keeps only the layer input, and the backward pass runs the
    /// layer again (without counting MoE statistics twice). Same results; less activation memory, about one more forward
    /// of compute. Only takes effect while autograd is recording.
    /// </summary>
    public bool EnableCheckpointing { get; set; }

    internal IEnumerable<Qwen3MoeLayer> Layers => layers.values();

    /// <summary>The LoRA adapters attached to this stage, or null (<see cref="Qwen3MoeForCausalLM.Lora"/>).</summary>
    internal Lora.LoraAdapters? Lora { get; set; }

    /// <summary>The dtype of the activations this stage sends (the first local layer's norm weight, as the seed).</summary>
    public ScalarType OutputDType => Layers.First().input_layernorm.weight.dtype;

    /// <summary>
    /// int64 [local sparse layers, E]: top-k choices per expert since the last <see cref="ResetMoeStats"/>. A new
    /// tensor: the caller disposes it.
    /// </summary>
    public Tensor MoeTokensPerExpert
    {
        get
        {
            var counters = Layers.Select(x => x.Moe).OfType<MoeLayer>().Select(m => m.TokensPerExpert).ToArray();
            return counters.Length == 0 ? zeros(0, _p.Layer.NumExperts, dtype: ScalarType.Int64) : stack(counters);
        }
    }

    /// <summary>int64 [E]: a copy of the counter of global layer <paramref name="layerIndex"/>, which must be a local sparse layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The layer is not on this stage or has no experts.</exception>
    public Tensor LayerMoeTokensPerExpert(int layerIndex)
    {
        if (layerIndex < FirstLayer || layerIndex >= EndLayer)
            throw new ArgumentOutOfRangeException(nameof(layerIndex), layerIndex,
                $"Layer {layerIndex} is not on this stage (layers [{FirstLayer}, {EndLayer})).");
        var moe = layers[layerIndex.ToString(CultureInfo.InvariantCulture)].Moe
            ?? throw new ArgumentOutOfRangeException(nameof(layerIndex), layerIndex, $"Layer {layerIndex} is dense: it has no experts.");
        return moe.TokensPerExpert.clone();
    }

    /// <summary>Zeroes the MoE statistics of every local layer.</summary>
    public void ResetMoeStats()
    {
        foreach (var m in Layers.Select(x => x.Moe).OfType<MoeLayer>()) m.ResetStats();
    }

    /// <summary>Sets the MoE statistics of every local layer to <paramref name="counts"/>, as <see cref="MoeTokensPerExpert"/> returned them.</summary>
    internal void RestoreMoeStats(Tensor counts)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var counters = Layers.Select(x => x.Moe).OfType<MoeLayer>().Select(m => m.TokensPerExpert).ToArray();
        for (int i = 0; i < counters.Length; i++) counters[i].copy_(counts[i]);
    }

    /// <summary>
    /// Late initialisation as the seed's <c>reset_parameters</c>: embeddings N(0,1), projections, router and head U(±1/√in)
    /// (PyTorch defaults), norms ones, MoE statistics zero. With <paramref name="seed"/>, each parameter draws from its own
    /// generator keyed by its name in the causal LM (<c>model.…</c>), so stages of a split model get the unsplit values;
    /// without, the global generator is used.
    /// </summary>
    public void ResetParameters(long? seed = null) => ResetParameters(new ParameterInitializer(this, seed, "model."));

    internal void ResetParameters(ParameterInitializer init)
    {
        embed_tokens?.ResetParameters(init.Scope(nameof(embed_tokens)));
        foreach (var layer in Layers) layer.ResetParameters(init.Scope($"{nameof(layers)}.{layer.Index.ToString(CultureInfo.InvariantCulture)}"));
        norm?.ResetParameters();
    }

    /// <summary>
    /// What this stage receives for one micro-batch of a pipeline batch whose ids are <paramref name="inputIdsShape"/>
    /// ([B,S]): the ids on the first stage, else the hidden states and, in snapshot mode Mean, the snapshot so far.
    /// </summary>
    /// <exception cref="ArgumentException">B is not a multiple of <paramref name="microBatches"/>.</exception>
    public IReadOnlyDictionary<string, StageTensorSpec> InferStageInputs(IReadOnlyList<long> inputIdsShape, int microBatches)
    {
        var (b, s) = MicroBatchShape(inputIdsShape, microBatches);
        if (Stage.IsFirst) return new Dictionary<string, StageTensorSpec> { [StageTensorNames.InputIds] = new(new[] { b, s }, ScalarType.Int64) };
        var specs = new Dictionary<string, StageTensorSpec> { [StageTensorNames.HiddenStates] = new(new[] { b, s, (long)_p.Layer.HiddenSize }, OutputDType) };
        if (HiddenStatesSnapshotMode != HiddenStatesAggregationMode.No)
            specs[StageTensorNames.HiddenStatesSnapshot] = new(new[] { FirstLayer + 1L, b, _p.Layer.HiddenSize }, OutputDType);
        return specs;
    }

    /// <summary>What this stage sends for one micro-batch: hidden states and, in snapshot mode Mean, the extended snapshot.</summary>
    /// <exception cref="ArgumentException">B is not a multiple of <paramref name="microBatches"/>.</exception>
    public IReadOnlyDictionary<string, StageTensorSpec> InferStageOutputs(IReadOnlyList<long> inputIdsShape, int microBatches)
    {
        var (b, s) = MicroBatchShape(inputIdsShape, microBatches);
        var specs = new Dictionary<string, StageTensorSpec> { [StageTensorNames.HiddenStates] = new(new[] { b, s, (long)_p.Layer.HiddenSize }, OutputDType) };
        if (HiddenStatesSnapshotMode != HiddenStatesAggregationMode.No)
            specs[StageTensorNames.HiddenStatesSnapshot] = new(new[] { EndLayer + 1L, b, _p.Layer.HiddenSize }, OutputDType);
        return specs;
    }

    internal static (long B, long S) MicroBatchShape(IReadOnlyList<long> inputIdsShape, int microBatches)
    {
        if (inputIdsShape.Count != 2) throw new
            ArgumentException($"Pipeline input ids must be [B,S], got [{string.Join(", ", inputIdsShape)}].", nameof(inputIdsShape));
        if (microBatches <= 0 || inputIdsShape[0] % microBatches != 0)
            throw new ArgumentException($"Batch size {inputIdsShape[0]} does not split into {microBatches} equal micro-batches.", nameof(microBatches));
        return (inputIdsShape[0] / microBatches, inputIdsShape[1]);
    }

    /// <summary>Runs the stage. Returns hidden states (normed on the last stage), the router logits of local sparse layers and the snapshot.</summary>
    public override CausalLMOutput forward(CausalLMBatch batch) => Forward(batch, null);

    /// <summary>
    /// Runs the stage; with <paramref name="cache"/> (inference only), the batch holds the next S tokens of each row (its
    /// <see cref="CausalLMBatch.PositionIds"/> required, <see cref="CausalLMBatch.AttentionMask"/> null: padding lives in the
    /// cache), they attend to the cached ones, their keys/values are appended and the cache advances by S.
    /// </summary>
    internal CausalLMOutput Forward(CausalLMBatch batch, Generation.KvCache? cache)
    {
        using var scope = NewDisposeScope();
        Tensor x;
        var aggregator = HiddenStatesAggregator.Create(HiddenStatesSnapshotMode, batch.HiddenStatesAggregationMask);
        if (Stage.IsFirst)
        {
            if (batch.InputIds is null) throw new ArgumentException("The first pipeline stage needs InputIds.", nameof(batch));
            x = embed_tokens!.forward(batch.InputIds);
        }
        else
        {
            x = batch.HiddenStates
                ?? throw new ArgumentException($"Pipeline stage {Stage.CurrentStage} needs HiddenStates from the previous stage.", nameof(batch));
            if (aggregator.IsActive && batch.HiddenStatesSnapshot is null)
                throw new ArgumentException($"Pipeline stage {Stage.CurrentStage} needs HiddenStatesSnapshot from the previous stage in snapshot mode " +
                    $"{HiddenStatesSnapshotMode}.", nameof(batch));
        }
        long b = x.shape[0], s = x.shape[1];
        if (s > _p.MaxPositionIds && batch.PositionIds is null)
            throw new ArgumentOutOfRangeException(nameof(batch), $"Sequence length {s} exceeds max_position_embeddings ({_p.MaxPositionIds}).");
        if (cache is not null && batch.DocumentIds is not null)
            throw new ArgumentException("DocumentIds (packed rows) cannot be used with a KV cache: generate one document per row.", nameof(batch));
        using var length = Scalars.Of(s);
        var documents = batch.DocumentIds?.to(x.device);                                                 // [B,S] packed rows, or null
        var positions = batch.PositionIds
            ?? (documents is not null
                ? PackedDocuments.Positions(documents)
                : arange(length, dtype: ScalarType.Int64, device: x.device).unsqueeze(0).expand(b, s));
        var (cos, sin) = cache?.Rotary(positions) ?? _rope.Compute(positions, x.dtype);
        var mask4d = cache is not null ? cache.AttentionMask(s)
            : documents is not null ? PackedDocuments.CausalMask(documents, batch.RightPadded ? null : batch.AttentionMask)
            : batch.AttentionMask is null || batch.RightPadded ? null : CausalMask(batch.AttentionMask, s);
        var all = batch.OutputHiddenStates ? new List<Tensor>() : null;
        if (Stage.IsFirst)
        {
            all?.Add(x);
            aggregator.Add(x);
        }
        bool checkpoint = EnableCheckpointing && is_grad_enabled();
        // a decode step (after the prefill, no gradients) runs each layer as one TorchScript call; layers with active LoRA adapters keep the modules
        bool scripted = cache is not null && cache.Length > 0 && Kernels.ScriptedDecode && !is_grad_enabled();
        var (scriptCos, scriptSin) = scripted ? RotaryEmbedding.Broadcast(cos, sin) : (cos, sin);       // [B,S,1,D] once per step
        var routerLogits = new List<Tensor>();
        foreach (var layer in Layers)
        {
            var (y, logits) = checkpoint
                ? CheckpointedLayer.Apply(layer, (h, c, count) => layer.Forward(h, c[0]!, c[1]!, c[2], c[3], count), x, cos, sin, mask4d, batch.AttentionMask)
                : scripted && Lora?.AdaptsLayer(layer.Index) != true
                    ? DecodeLayerScript.Step(layer, x, scriptCos, scriptSin, mask4d, cache![layer.Index]!, Kernels)
                    : layer.Forward(x, cos, sin, mask4d, batch.AttentionMask, countStatistics: cache is null, cache?[layer.Index]);
            x = y;
            if (logits is not null) routerLogits.Add(logits);
            all?.Add(x);
            aggregator.Add(x);
        }
        if (norm is not null) x = norm.forward(x);
        cache?.Advance(s);
        var snapshot = aggregator.Pack(batch.HiddenStatesSnapshot);
        return new CausalLMOutput
        {
            HiddenStates = x.MoveToOuterDisposeScope(),
            RouterLogits = routerLogits.Select(t => t.MoveToOuterDisposeScope()).ToList(),
            AllHiddenStates = all?.Select(t => t.MoveToOuterDisposeScope()).ToList(),
            HiddenStatesSnapshot = snapshot?.MoveToOuterDisposeScope(),
        };
    }

    /// <summary>Boolean [B,1,S,S]: causal and key is a real token; the diagonal always stays open so no row is empty.</summary>
    private static Tensor CausalMask(Tensor attentionMask, long s)
    {
        using var scope = NewDisposeScope();
        var causal = ones(s, s, dtype: ScalarType.Bool, device: attentionMask.device).tril();
        var keys = attentionMask.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1);                   // [B,1,1,S]
        var diagonal = eye(s, dtype: ScalarType.Bool, device: attentionMask.device);
        return causal.logical_and(keys).logical_or(diagonal).MoveToOuterDisposeScope();                 // [B,1,S,S]
    }
}
