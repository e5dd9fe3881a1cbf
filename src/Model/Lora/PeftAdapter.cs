using System.Text.RegularExpressions;
using Microsoft.ML.Qwen3Moe.Safetensors;
using Microsoft.ML.Qwen3Moe.Storage;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Lora;

/// <summary>
/// Hugging Face PEFT adapter folders (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>), exactly as PEFT 0.21
/// writes them for transformers 5's <c>Qwen3MoeForCausalLM</c>: keys <c>base_model.model.{module}.lora_A.weight</c> [r,in]
/// and <c>.lora_B.weight</c> [out,r]; routed experts through <c>target_parameters</c>, where <c>gate_up_proj</c>'s pair is
/// <c>mlp.experts.base_layer.lora_A/B</c> and <c>down_proj</c>'s <c>mlp.experts.lora_A/B</c> when both are adapted (PEFT
/// nests one wrapper per parameter, in the experts' parameter order), each with the rank dimension times the number of
/// experts (A [r·E,in], row e·r+j = expert e's row j; B [out,r·E], column j·E+e = expert e's column j); fully trained
/// modules (<c>modules_to_save</c>) under their plain names (<c>mlp.gate.weight</c>, <c>lm_head.weight</c>).
/// </summary>
/// <remarks>
/// transformers 5 makes PEFT rewrite the target names <c>gate_proj</c>/<c>up_proj</c>/<c>down_proj</c> into the fused
/// experts (with a doubled <c>gate_up_proj</c> rank in <c>rank_pattern</c>/<c>alpha_pattern</c>), so PEFT cannot reach the
/// dense MLP of <c>mlp_only_layers</c>; adapters with <see cref="LoraTargets.DenseMlp"/> are written in PEFT's format and load
/// here, but PEFT would not apply them.
/// </remarks>
public static class PeftAdapter
{
    /// <summary>The weights file of an adapter folder.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>The config file of an adapter folder.</summary>
    public const string ConfigFileName = PeftAdapterConfig.FileName;

    private const string Prefix = "base_model.model.";
    private static readonly Regex LayerKey = new(@"^model\.layers\.(\d+)\.", RegexOptions.CultureInvariant);

    /// <summary>
    /// Writes the adapters of <paramref name="stages"/> (together: the whole model) to <paramref name="folder"/>, created
    /// or replaced atomically.
    /// </summary>
    /// <param name="stages">The model's stages, each with <see cref="Qwen3MoeForCausalLM.Lora"/>.</param>
    /// <param name="folder">The adapter folder.</param>
    /// <param name="baseModelNameOrPath">What <c>base_model_name_or_path</c> records (PEFT loads the base from it when asked); null leaves it null.</param>
    /// <exception cref="InvalidOperationException">A stage has no adapters, or they are merged.</exception>
    public static void Save(IReadOnlyList<Qwen3MoeForCausalLM> stages, string folder, string? baseModelNameOrPath = null)
    {
        ArgumentNullException.ThrowIfNull(stages);
        ArgumentNullException.ThrowIfNull(folder);
        if (stages.Count == 0) throw new ArgumentException("No model stage to save.", nameof(stages));
        var sets = stages.Select(s => s.Lora ?? throw new InvalidOperationException("A model stage has no LoRA adapters to save.")).ToList();
        if (sets.Any(s => s.Merged))
            throw new InvalidOperationException("The LoRA adapters are merged into the base weights; restore the base (RestoreBase) before saving them.");
        var options = sets[0].Options;
        using var scope = NewDisposeScope();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var modules = new SortedSet<string>(StringComparer.Ordinal);
        var parameters = new SortedSet<string>(StringComparer.Ordinal);
        var toSave = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var set in sets)
        {
            foreach (var l in set.Linear)
            {
                tensors.Add(new(Prefix + l.HfName + ".lora_A.weight", l.A.weight!.detach()));
                tensors.Add(new(Prefix + l.HfName + ".lora_B.weight", l.B.weight!.detach()));
                modules.Add(l.HfName[(l.HfName.LastIndexOf('.') + 1)..]);
            }
            foreach (var e in set.Experts)
            {
                var gateUpKey = e.Down is null ? e.HfPrefix : e.HfPrefix + ".base_layer";
                if (e.GateUp is { } gu)
                {
                    tensors.AddRange(ToPeft(gu, gateUpKey));
                    parameters.Add("mlp.experts.gate_up_proj");
                }
                if (e.Down is { } dn)
                {
                    tensors.AddRange(ToPeft(dn, e.HfPrefix));
                    parameters.Add("mlp.experts.down_proj");
                }
            }
            foreach (var (name, p) in set.FullyTrained)
            {
                tensors.Add(new(Prefix + name, p.detach()));
                toSave.Add(name == "lm_head.weight" ? "lm_head" : "gate");
            }
        }
        var config = PeftAdapterConfig.ToJson(options, modules, parameters, toSave, baseModelNameOrPath);
        WriteFolder(folder, tensors.OrderBy(t => t.Key, StringComparer.Ordinal), config);
    }

    /// <summary>PEFT's layout of one experts pair: A [E,r,in] to [r·E,in]; B [E,out,r] to [out,r·E] (column j·E+e).</summary>
    private static IEnumerable<KeyValuePair<string, Tensor>> ToPeft(ExpertsAdapter.Pair p, string key)
    {
        long e = p.A.shape[0], r = p.A.shape[1];
        yield return new(Prefix + key + ".lora_A.weight", p.A.detach().reshape(e * r, p.A.shape[2]));
        yield return new(Prefix + key + ".lora_B.weight", p.B.detach().permute(1, 2, 0).reshape(p.B.shape[1], r * e));
    }

    /// <summary>Writes the two files into a staging folder swapped in atomically; an existing folder must hold nothing else (it is not ours to
    /// delete).</summary>
    private static void WriteFolder(string folder, IEnumerable<KeyValuePair<string, Tensor>> tensors, string config)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        if (File.Exists(full) || new FileInfo(full).LinkTarget is not null) throw new IOException($"'{full}' is a file or a link, not a folder.");
        var parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{folder}' has no parent folder.", nameof(folder));
        Directory.CreateDirectory(parent);
        if (Directory.Exists(full))
        {
            var foreign = Directory.EnumerateFileSystemEntries(full).Select(Path.GetFileName).FirstOrDefault(n =>
                n is not (WeightsFileName or ConfigFileName or "README.md"));
            if (foreign is not null)
                throw new IOException($"'{full}' holds '{foreign}', which an adapter export does not write: choose an empty or adapter folder.");
        }
        var staging = FolderSwap.CreateStaging(full);
        try
        {
            SafetensorsWriter.Write(Path.Combine(staging, WeightsFileName), tensors);
            AtomicFile.Write(Path.Combine(staging, ConfigFileName), s => s.Write(System.Text.Encoding.UTF8.GetBytes(config)));
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
        FolderSwap.SwapIn(full, staging);
    }

    /// <summary>
    /// Reads the adapter in <paramref name="folder"/> and attaches it to <paramref name="stages"/> (each stage takes the
    /// modules of its layers): its targets are the modules the weights name, rank and scaling come from the config
    /// (<c>r</c>, <c>lora_alpha</c>, <c>use_rslora</c>, <c>rank_pattern</c>, <c>alpha_pattern</c>), and fully trained
    /// modules replace the base values.
    /// </summary>
    /// <param name="stages">The model's stages (base weights loaded, no adapters yet).</param>
    /// <param name="folder">A PEFT adapter folder.</param>
    /// <param name="adapterDType">dtype of the factors; null keeps the base model's.</param>
    /// <returns>The adapters of each stage.</returns>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A tensor is of the wrong shape, names no module of this model, or a pair is incomplete; the message names the
    /// key.</exception>
    /// <exception cref="NotSupportedException">The config uses a PEFT feature this library does not implement.</exception>
    public static IReadOnlyList<LoraAdapters> Load(IReadOnlyList<Qwen3MoeForCausalLM> stages, string folder, ScalarType? adapterDType = null)
    {
        ArgumentNullException.ThrowIfNull(stages);
        ArgumentNullException.ThrowIfNull(folder);
        var options = PeftAdapterConfig.Read(folder) with { AdapterDType = adapterDType };
        var weightsPath = Path.Combine(folder, WeightsFileName);
        if (!File.Exists(weightsPath)) throw new FileNotFoundException($"'{folder}' is not a PEFT adapter folder: {WeightsFileName} is missing.", weightsPath);
        using var file = SafetensorsFile.Open(weightsPath);
        InvalidDataException Bad(string key, string problem) => new($"{weightsPath}: tensor '{key}' {problem}.");
        foreach (var key in file.Entries.Keys)
            if (!key.StartsWith(Prefix, StringComparison.Ordinal)) throw Bad(key, $"does not start with '{Prefix}' (not a PEFT adapter of a causal LM)");

        // Targets: the modules the weights name.
        var targets = new HashSet<string>(StringComparer.Ordinal);
        var kinds = LoraTargets.None;
        var names = file.Entries.Keys.Select(k => k[Prefix.Length..]).ToHashSet(StringComparer.Ordinal);
        var p = stages[0].Parameters.Model;
        foreach (var n in names)
        {
            if (n == "lm_head.weight") { targets.Add("lm_head"); kinds |= LoraTargets.LmHead; continue; }
            if (n.EndsWith(".mlp.gate.weight", StringComparison.Ordinal)) { targets.Add(n[..^".weight".Length]); kinds |= LoraTargets.Router; continue; }
            var module = n.EndsWith(".lora_A.weight", StringComparison.Ordinal) ? n[..^".lora_A.weight".Length]
                : n.EndsWith(".lora_B.weight", StringComparison.Ordinal) ? n[..^".lora_B.weight".Length]
                : throw Bad(Prefix + n, "is neither a LoRA factor (lora_A/lora_B) nor a fully trained router or LM head");
            var leaf = module[(module.LastIndexOf('.') + 1)..];
            if (module.EndsWith(".mlp.experts.base_layer", StringComparison.Ordinal)) { targets.Add(module[..^".base_layer".Length]
                + ".gate_up_proj"); kinds |= LoraTargets.Experts; }
            else if (module.EndsWith(".mlp.experts", StringComparison.Ordinal))
            {
                targets.Add(module + (names.Contains(module + ".base_layer.lora_A.weight") ? ".down_proj" : ExpertsParameterOf(file, Prefix + n,
                    p.Layer.HiddenSize, p.Layer.IntermediateSize)));
                kinds |= LoraTargets.Experts;
            }
            else if (module.Contains(".self_attn.", StringComparison.Ordinal)
                && leaf is "q_proj" or "k_proj" or "v_proj" or "o_proj") { targets.Add(module); kinds |= LoraTargets.Attention; }
            else if (module.Contains(".mlp.", StringComparison.Ordinal)
                && leaf is "gate_proj" or "up_proj" or "down_proj") { targets.Add(module); kinds |= LoraTargets.DenseMlp; }
            else throw Bad(Prefix + n, "adapts a module this library cannot adapt");
        }
        if (kinds == LoraTargets.None) throw new InvalidDataException($"{weightsPath}: the adapter holds no tensors.");
        options = options with { Targets = kinds };

        var consumed = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<LoraAdapters>();
        using var _ = no_grad();
        foreach (var stage in stages)
        {
            var set = LoraAdapters.Attach(stage, options, targets.Contains, initialize: false);
            result.Add(set);
            void Copy(string key, Tensor into, Func<Tensor, Tensor>? convert = null)
            {
                if (!file.Entries.TryGetValue(key,
                    out var entry)) throw new InvalidDataException($"{weightsPath}: tensor '{key}' is missing (its pair is in the file).");
                using var scope = NewDisposeScope();
                var t = file.ReadTensor(key);
                var needed = convert is null ? into.shape : ExpectedPeftShape(into, key);
                if (!entry.Shape.SequenceEqual(needed))
                    throw Bad(key, $"has shape [{string.Join(", ", entry.Shape)}] but this model and the config's rank need [{string.Join(", ", needed)}]");
                into.copy_(convert is null ? t : convert(t));
                consumed.Add(key);
            }
            foreach (var l in set.Linear)
            {
                Copy(Prefix + l.HfName + ".lora_A.weight", l.A.weight!);
                Copy(Prefix + l.HfName + ".lora_B.weight", l.B.weight!);
            }
            foreach (var e in set.Experts)
            {
                var gateUpKey = e.Down is null ? e.HfPrefix : e.HfPrefix + ".base_layer";
                foreach (var (pair, key) in new[] { (e.GateUp, gateUpKey), (e.Down, e.HfPrefix) })
                {
                    if (pair is null) continue;
                    long ex = pair.A.shape[0], r = pair.A.shape[1], outF = pair.B.shape[1];
                    Copy(Prefix + key + ".lora_A.weight", pair.A, t => t.view(ex, r, -1));
                    Copy(Prefix + key + ".lora_B.weight", pair.B, t => t.view(outF, r, ex).permute(2, 0, 1));
                }
            }
            foreach (var (name, param) in set.FullyTrained) Copy(Prefix + name, param);
        }
        var owned = stages.SelectMany(s => Enumerable.Range(s.Model.FirstLayer, s.Model.EndLayer - s.Model.FirstLayer)).ToHashSet();
        bool hasLast = stages.Any(s => s.Stage.IsLast);
        foreach (var key in file.Entries.Keys.Where(k => !consumed.Contains(k)).OrderBy(k => k, StringComparer.Ordinal))
        {
            var m = LayerKey.Match(key[Prefix.Length..]);
            bool mine = m.Success ? owned.Contains(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)) : hasLast;
            if (mine) throw Bad(key, "names no module of this model (wrong layer, a dense layer's experts, or a target of another architecture)");
        }
        return result;
    }

    /// <summary>The PEFT shape of an experts factor: A [E,r,in] is stored [r·E,in], B [E,out,r] is stored [out,r·E].</summary>
    private static long[] ExpectedPeftShape(Tensor ours, string key) => key.EndsWith(".lora_A.weight", StringComparison.Ordinal)
        ? new[] { ours.shape[0] * ours.shape[1], ours.shape[2] }
        : new[] { ours.shape[1], ours.shape[0] * ours.shape[2] };

    /// <summary>Which experts weight a lone <c>mlp.experts.lora_A/B</c> adapts, from its shape (A: in = H or I; B: out = 2I or H).</summary>
    private static string ExpertsParameterOf(SafetensorsFile file, string key, int hidden, int intermediate)
    {
        var shape = file.Entries[key].Shape;
        bool isA = key.EndsWith(".lora_A.weight", StringComparison.Ordinal);
        long features = isA ? shape[^1] : shape[0];
        if (isA ? features == hidden && hidden != intermediate : features == 2L * intermediate) return ".gate_up_proj";
        if (isA ? features == intermediate : features == hidden) return ".down_proj";
        throw new InvalidDataException($"{file.Path}: tensor '{key}' of shape [{string.Join(", ", shape)}] fits neither experts weight " +
            $"(hidden {hidden}, expert width {intermediate}).");
    }
}
