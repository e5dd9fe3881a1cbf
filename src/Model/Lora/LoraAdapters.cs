using System.Globalization;
using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Lora;

/// <summary>
/// The LoRA adapters of one model stage: low-rank pairs on its linear targets (<see cref="LinearAdapter"/>) and routed
/// experts (<see cref="ExpertsAdapter"/>), plus the modules that train fully (router, LM head). Attaching freezes every
/// other parameter (no gradient, so no gradient buffer and no optimizer state); the trainer then updates only
/// <see cref="TrainableNames"/>. Factors start as PEFT starts them: A kaiming-uniform (U(±1/√in)), B zero, so the adapted
/// model equals the base until the first step. Each stage of a pipeline split has its own set; names are global, so
/// every split draws the same initial factors.
/// </summary>
public sealed class LoraAdapters
{
    private readonly List<LinearAdapter> _linear = new();
    private readonly List<ExpertsAdapter> _experts = new();
    private readonly Dictionary<string, Parameter> _fullyTrained = new(StringComparer.Ordinal);
    private readonly HashSet<string> _adapterNames = new(StringComparer.Ordinal);
    private readonly HashSet<string> _trainable = new(StringComparer.Ordinal);
    private readonly HashSet<int> _adaptedLayers = new();

    private LoraAdapters(Qwen3MoeForCausalLM stage, LoraOptions options)
    {
        Stage = stage;
        Options = options;
    }

    /// <summary>The stage these adapters belong to.</summary>
    public Qwen3MoeForCausalLM Stage { get; }

    /// <summary>The options the adapters were built with.</summary>
    public LoraOptions Options { get; }

    /// <summary>Whether the adapters have been merged into the base weights (they then add nothing).</summary>
    public bool Merged { get; private set; }

    /// <summary>Names (the stage's parameter names) of the parameters that train: the factors and fully trained modules.</summary>
    public IReadOnlyCollection<string> TrainableNames => _trainable;

    internal IReadOnlyList<LinearAdapter> Linear => _linear;

    /// <summary>
    /// Whether decoder layer <paramref name="layerIndex"/> has low-rank pairs that still add to its output (not merged):
    /// such a layer runs through its modules (their hooks and the experts' adapter), never the scripted decode step.
    /// </summary>
    internal bool AdaptsLayer(int layerIndex) => !Merged && _adaptedLayers.Contains(layerIndex);
    internal IReadOnlyList<ExpertsAdapter> Experts => _experts;

    /// <summary>Fully trained parameters by Hugging Face name (<c>model.layers.0.mlp.gate.weight</c>, <c>lm_head.weight</c>).</summary>
    internal IReadOnlyDictionary<string, Parameter> FullyTrained => _fullyTrained;

    /// <summary>Whether <paramref name="name"/> (a parameter name of the stage) is a LoRA factor (not part of the base model).</summary>
    public bool IsAdapterParameter(string name) => _adapterNames.Contains(name);

    /// <summary>
    /// Attaches adapters to <paramref name="stage"/> as <paramref name="options"/> say and initialises them (A
    /// kaiming-uniform from <see cref="LoraOptions.Seed"/>, B zero); freezes the base.
    /// </summary>
    /// <exception cref="InvalidOperationException">The stage already has adapters.</exception>
    /// <exception cref="NotSupportedException">LmHead on a tied or split-vocabulary head.</exception>
    public static LoraAdapters Attach(Qwen3MoeForCausalLM stage, LoraOptions options) => Attach(stage, options, include: null, initialize: true);

    /// <summary>As <see cref="Attach(Qwen3MoeForCausalLM, LoraOptions)"/>, restricted to targets whose Hugging Face name
    /// passes <paramref name="include"/> (adapters read from a file cover only the modules the file holds).</summary>
    internal static LoraAdapters Attach(Qwen3MoeForCausalLM stage, LoraOptions options, Func<string, bool>? include, bool initialize)
    {
        ArgumentNullException.ThrowIfNull(stage);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (stage.Lora is not null) throw new InvalidOperationException("This model stage already has LoRA adapters; merge or dispose them first.");
        if (options.Targets.HasFlag(LoraTargets.LmHead) && stage.lm_head is { } head && (include?.Invoke("lm_head") ?? true)
            && (head.IsTied || stage.Parameters.Model.SplitVocabOrder.Count != 1))
            throw new NotSupportedException("LoraTargets.LmHead needs an untied LM head with a single vocabulary split " +
                "(PEFT's modules_to_save copies one lm_head.weight).");
        var set = new LoraAdapters(stage, options);
        set.Build(include ?? (_ => true));
        set.Freeze();
        if (initialize) set.Initialize();
        stage.Lora = set;
        return set;
    }

    private void Build(Func<string, bool> include)
    {
        var t = Options.Targets;
        var dtype = Options.AdapterDType ?? Stage.DType;
        void AddLinear(Linear l, string hfName)
        {
            if (!include(hfName)) return;
            var (r, a) = Options.For(hfName);
            _linear.Add(LinearAdapter.Attach(l, hfName, r, a, Options, dtype));
        }
        foreach (var layer in Stage.Model.Layers)
        {
            int adapters = _linear.Count + _experts.Count;
            var prefix = "model.layers." + layer.Index.ToString(CultureInfo.InvariantCulture) + ".";
            if (t.HasFlag(LoraTargets.Attention))
            {
                var at = layer.self_attn;
                AddLinear(at.q_proj, prefix + "self_attn.q_proj");
                AddLinear(at.k_proj, prefix + "self_attn.k_proj");
                AddLinear(at.v_proj, prefix + "self_attn.v_proj");
                AddLinear(at.o_proj, prefix + "self_attn.o_proj");
            }
            if (layer.mlp is SwiGluMlp dense && t.HasFlag(LoraTargets.DenseMlp))
            {
                AddLinear(dense.gate_proj, prefix + "mlp.gate_proj");
                AddLinear(dense.up_proj, prefix + "mlp.up_proj");
                AddLinear(dense.down_proj, prefix + "mlp.down_proj");
            }
            if (layer.Moe is { } moe)
            {
                if (t.HasFlag(LoraTargets.Experts))
                {
                    var ep = prefix + "mlp.experts";
                    (int, double)? gu = include(ep + ".gate_up_proj") ? Options.For(ep + ".gate_up_proj") : null;
                    (int, double)? dn = include(ep + ".down_proj") ? Options.For(ep + ".down_proj") : null;
                    if (gu is not null || dn is not null) _experts.Add(ExpertsAdapter.Attach(moe.experts, ep, gu, dn, Options, dtype));
                }
                if (t.HasFlag(LoraTargets.Router) && include(prefix + "mlp.gate")) _fullyTrained[prefix + "mlp.gate.weight"] = moe.gate.weight;
            }
            if (_linear.Count + _experts.Count > adapters) _adaptedLayers.Add(layer.Index);
        }
        if (t.HasFlag(LoraTargets.LmHead) && Stage.lm_head is { } head && include("lm_head"))
            _fullyTrained["lm_head.weight"] = head.Weight(Stage.Parameters.Model.SplitVocabOrder[0]);
        var factors = new HashSet<IntPtr>();
        foreach (var l in _linear) { factors.Add(l.A.weight!.Handle); factors.Add(l.B.weight!.Handle); }
        foreach (var e in _experts)
            foreach (var p in new[] { e.GateUp, e.Down })
                if (p is not null) { factors.Add(p.A.Handle); factors.Add(p.B.Handle); }
        var full = _fullyTrained.Values.Select(p => p.Handle).ToHashSet();
        foreach (var (name, p) in Stage.named_parameters())
        {
            if (factors.Contains(p.Handle)) { _adapterNames.Add(name); _trainable.Add(name); }
            else if (full.Contains(p.Handle)) _trainable.Add(name);
        }
    }

    /// <summary>Only the factors and fully trained modules keep <c>requires_grad</c>.</summary>
    private void Freeze()
    {
        foreach (var (name, p) in Stage.named_parameters())
        {
            p.requires_grad = _trainable.Contains(name);
            p.grad = null;
        }
    }

    /// <summary>PEFT's init: A ~ U(±1/√in) (kaiming-uniform with a = √5), B = 0; each factor from its own generator keyed by (seed, name).</summary>
    private void Initialize()
    {
        using var _ = no_grad();
        foreach (var (name, p) in Stage.named_parameters().Where(np => _adapterNames.Contains(np.name)))
        {
            bool isA = name.EndsWith("lora_A.weight", StringComparison.Ordinal) || name.EndsWith("lora_A", StringComparison.Ordinal);
            if (!isA) { p.zero_(); continue; }
            double bound = 1 / Math.Sqrt(p.shape[^1]);
            ParameterInitializer.Seeded(Options.Seed, name, p.device, g => p.uniform_(-bound, bound, g));
        }
    }

    /// <summary>
    /// Adds every update into its base weight in place (<c>W += s·B·A</c>, computed in float32) and deactivates the
    /// adapters, so the stage computes the same function without the low-rank paths (for a merged export).
    /// <see cref="RestoreBase"/> undoes it exactly by reloading the base weights.
    /// </summary>
    public void MergeIntoBase()
    {
        if (Merged) return;
        using var _ = no_grad();
        foreach (var l in _linear)
        {
            using var scope = NewDisposeScope();
            var w = l.Target.weight!;
            w.copy_(w.to(ScalarType.Float32).add_(l.DeltaWeight(), Scalars.One));
            l.Active = false;
        }
        foreach (var e in _experts)
        {
            using var scope = NewDisposeScope();
            if (e.GateUp is { } gu) e.Experts.gate_up_proj.copy_(e.Experts.gate_up_proj.to(ScalarType.Float32).add_(ExpertsAdapter.DeltaWeight(gu),
                Scalars.One));
            if (e.Down is { } dn) e.Experts.down_proj.copy_(e.Experts.down_proj.to(ScalarType.Float32).add_(ExpertsAdapter.DeltaWeight(dn), Scalars.One));
            e.Active = false;
        }
        Merged = true;
    }

    /// <summary>
    /// Undoes <see cref="MergeIntoBase"/> exactly: reloads the base weights from <paramref name="baseFolder"/> (the
    /// Hugging Face folder the stage was loaded from; fully trained modules keep their trained values) and reactivates
    /// the adapters.
    /// </summary>
    public void RestoreBase(string baseFolder)
    {
        if (!Merged) return;
        using var scope = NewDisposeScope();
        var kept = _fullyTrained.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        HuggingFaceCheckpoint.LoadWeights(Stage, baseFolder, initializeAddedSplits: false);
        using (no_grad())
            foreach (var (k, v) in kept) _fullyTrained[k].copy_(v);
        foreach (var l in _linear) l.Active = true;
        foreach (var e in _experts) e.Active = true;
        Merged = false;
    }
}
