using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Configuration;
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

    /// <summary>Builds the stage's modules on <paramref name="device"/> in <paramref name="dtype"/>; weights are uninitialised until loaded or <see cref="Qwen3MoeForCausalLM.InitializeWeights"/>.</summary>
    public Qwen3MoeModel(Qwen3MoeParameters parameters, PipelineStageInfo stage, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(Qwen3MoeModel))
    {
        parameters.Validate();
        _p = parameters;
        Stage = stage;
        (FirstLayer, EndLayer) = LayerDistribution.DistributeLayersForPipelineStage(
            parameters.NumHiddenLayers, parameters.PipelineNumVirtualLayersPre, parameters.PipelineNumVirtualLayersPost, stage);
        var l = parameters.Layer;
        if (stage.IsFirst) embed_tokens = new SplitTokenEmbeddings(l.HiddenSize, parameters.SplitVocabSize, parameters.SplitVocabOrder, device, dtype);
        layers = new ModuleDict<Qwen3MoeLayer>();
        for (int i = FirstLayer; i < EndLayer; i++)
            layers.Add((i.ToString(System.Globalization.CultureInfo.InvariantCulture), new Qwen3MoeLayer(l, parameters.IsSparseLayer(i), device, dtype)));
        if (stage.IsLast) norm = new RmsNorm(l.HiddenSize, l.RmsNormEps, device, dtype);
        _rope = new RotaryEmbedding(l.HeadDim, parameters.RopeBase, parameters.MaxPositionIds);
        RegisterComponents();
    }

    /// <summary>The backbone parameters.</summary>
    public Qwen3MoeParameters Parameters => _p;

    /// <summary>The stage this module was built for.</summary>
    public PipelineStageInfo Stage { get; }

    /// <summary>First global layer index owned by this stage.</summary>
    public int FirstLayer { get; }

    /// <summary>One past the last global layer index owned by this stage.</summary>
    public int EndLayer { get; }

    internal IEnumerable<Qwen3MoeLayer> Layers => layers.values();

    /// <summary>int64 [local sparse layers, E]: top-k choices per expert since the last <see cref="ResetMoeStats"/>. A new tensor: the caller disposes it.</summary>
    public Tensor MoeTokensPerExpert
    {
        get
        {
            var counters = Layers.Select(x => x.Moe).OfType<MoeLayer>().Select(m => m.TokensPerExpert).ToArray();
            return counters.Length == 0 ? zeros(0, _p.Layer.NumExperts, dtype: ScalarType.Int64) : stack(counters);
        }
    }

    /// <summary>Zeroes the MoE statistics of every local layer.</summary>
    public void ResetMoeStats()
    {
        foreach (var m in Layers.Select(x => x.Moe).OfType<MoeLayer>()) m.ResetStats();
    }

    /// <summary>Runs the stage. Returns hidden states (normed on the last stage) and the router logits of local sparse layers.</summary>
    public override CausalLMOutput forward(CausalLMBatch batch) => Forward(batch, countStatistics: true);

    internal CausalLMOutput Forward(CausalLMBatch batch, bool countStatistics)
    {
        using var scope = NewDisposeScope();
        Tensor x;
        if (Stage.IsFirst)
        {
            if (batch.InputIds is null) throw new ArgumentException("The first pipeline stage needs InputIds.", nameof(batch));
            x = embed_tokens!.forward(batch.InputIds);
        }
        else
        {
            x = batch.HiddenStates ?? throw new ArgumentException($"Pipeline stage {Stage.CurrentStage} needs HiddenStates from the previous stage.", nameof(batch));
        }
        long b = x.shape[0], s = x.shape[1];
        if (s > _p.MaxPositionIds && batch.PositionIds is null)
            throw new ArgumentOutOfRangeException(nameof(batch), $"Sequence length {s} exceeds max_position_embeddings ({_p.MaxPositionIds}).");
        var positions = batch.PositionIds ?? arange(s, dtype: ScalarType.Int64, device: x.device).unsqueeze(0).expand(b, s);
        var (cos, sin) = _rope.Compute(positions, x.dtype);
        var mask4d = batch.AttentionMask is null ? null : CausalMask(batch.AttentionMask, s);
        var all = batch.OutputHiddenStates ? new List<Tensor>() : null;
        if (Stage.IsFirst) all?.Add(x);
        var routerLogits = new List<Tensor>();
        foreach (var layer in Layers)
        {
            var (y, logits) = layer.Forward(x, cos, sin, mask4d, batch.AttentionMask, countStatistics);
            x = y;
            if (logits is not null) routerLogits.Add(logits);
            all?.Add(x);
        }
        if (norm is not null) x = norm.forward(x);
        var outp = new CausalLMOutput
        {
            HiddenStates = x.MoveToOuterDisposeScope(),
            RouterLogits = routerLogits.Select(t => t.MoveToOuterDisposeScope()).ToList(),
            AllHiddenStates = all?.Select(t => t.MoveToOuterDisposeScope()).ToList(),
        };
        return outp;
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
