using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Pipelining;
using TorchSharp;
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

    /// <summary>Builds the stage on <paramref name="device"/> in <paramref name="dtype"/> (default: CPU, float32). Weights are uninitialised: load a checkpoint or call <see cref="InitializeWeights"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Invalid parameters; the message names the field.</exception>
    public Qwen3MoeForCausalLM(Qwen3MoeForCausalLMParameters parameters, PipelineStageInfo? stage = null, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(Qwen3MoeForCausalLM))
    {
        parameters.Validate();
        Parameters = parameters;
        var st = stage ?? PipelineStageInfo.Single;
        if (parameters.TieWordEmbeddings && st.NumStages > 1)
            throw new NotSupportedException("tie_word_embeddings with more than one pipeline stage is not supported: the embedding and the head would live on different stages.");
        model = new Qwen3MoeModel(parameters.Model, st, device, dtype);
        var m = parameters.Model;
        Func<Parameter>? tied = parameters.TieWordEmbeddings ? () => model.embed_tokens!.Weight(m.SplitVocabOrder[0]) : null;
        if (st.IsLast) lm_head = new SplitLanguageModellingHead(m.Layer.HiddenSize, m.SplitVocabSize, m.SplitVocabOrder, device, dtype, tied);
        RegisterComponents();
    }

    /// <summary>The parameters this model was built from.</summary>
    public Qwen3MoeForCausalLMParameters Parameters { get; }

    /// <summary>The backbone.</summary>
    public Qwen3MoeModel Model => model;

    /// <summary>The stage this module was built for.</summary>
    public PipelineStageInfo Stage => model.Stage;

    /// <summary>int64 [local sparse layers, E]: top-k choices per expert since the last <see cref="ResetMoeStats"/>.</summary>
    public Tensor MoeTokensPerExpert => model.MoeTokensPerExpert;

    /// <summary>Zeroes the MoE statistics.</summary>
    public void ResetMoeStats() => model.ResetMoeStats();

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

    /// <summary>Runs the stage: hidden states, router logits and, on the last stage, per-token NLL (with labels) and logits (when asked).</summary>
    /// <exception cref="ArgumentException">An empty batch, or tensors of the wrong rank, dtype or shape; the message names them.</exception>
    public override CausalLMOutput forward(CausalLMBatch batch)
    {
        CausalLMBatchCheck.Validate(batch, Parameters.Model.VocabSize);
        using var scope = NewDisposeScope();
        var trunk = model.forward(batch);
        if (lm_head is null) return MoveOut(trunk);
        var logps = batch.Labels is null ? null : lm_head.PerTokenNll(trunk.HiddenStates, batch.Labels);
        var logits = batch.ReturnLogits ? lm_head.forward(trunk.HiddenStates) : null;
        return MoveOut(new CausalLMOutput
        {
            HiddenStates = trunk.HiddenStates,
            RouterLogits = trunk.RouterLogits,
            AllHiddenStates = trunk.AllHiddenStates,
            Logps = logps,
            Logits = logits,
        });
    }

    /// <summary>FNV-1a of the parameter name mixed with the seed: stable across runs, processes and stage layouts.</summary>
    private static ulong ParameterSeed(long seed, string name)
    {
        ulong h = 14695981039346656037UL ^ (ulong)seed;
        foreach (var c in name) h = (h ^ c) * 1099511628211UL;
        return h;
    }

    private static CausalLMOutput MoveOut(CausalLMOutput o)
    {
        o.HiddenStates.MoveToOuterDisposeScope();
        o.Logits?.MoveToOuterDisposeScope();
        o.Logps?.MoveToOuterDisposeScope();
        foreach (var t in o.RouterLogits) t.MoveToOuterDisposeScope();
        foreach (var t in o.AllHiddenStates ?? Array.Empty<Tensor>()) t.MoveToOuterDisposeScope();
        return o;
    }

    /// <summary>
    /// Fills every weight as HF does for a fresh model (normal(0, initializer_range) for projections, experts, router and
    /// embeddings; zeros for biases; ones for norms), reproducibly from <paramref name="seed"/> on any device. Each
    /// parameter draws from its own generator seeded by (seed, name), so a model split into pipeline stages gets exactly
    /// the weights of the unsplit model.
    /// </summary>
    public void InitializeWeights(long seed)
    {
        using var _ = no_grad();
        double std = Parameters.InitializerRange;
        foreach (var (name, p) in UniqueNamedParameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.fill_(1.0);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else
            {
                using var gen = new Generator(ParameterSeed(seed, name), p.device);
                p.normal_(0, std, gen);
            }
        }
        ResetMoeStats();
    }
}
