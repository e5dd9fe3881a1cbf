using System.Globalization;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Pipelining;
using Microsoft.ML.Qwen3Moe.Safetensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.HuggingFace;

/// <summary>
/// Loads and exports Hugging Face Qwen3-MoE checkpoints (<c>config.json</c> + safetensors, single file or sharded).
/// Experts are read from per-expert keys (published checkpoints) or the fused transformers-5 tensors, and exported per
/// expert. A stage loads only its own tensors. Any missing, unexpected or mis-shaped tensor is an error naming the key.
/// </summary>
public static class HuggingFaceCheckpoint
{
    /// <summary>Default shard size limit of <see cref="Save(Qwen3MoeForCausalLM, string, long)"/>: 5 GB, as transformers writes.</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    /// <summary>Builds the model (or one pipeline stage of it) described by <c>folder/config.json</c> and loads its weights.</summary>
    /// <param name="folder">A Hugging Face model folder.</param>
    /// <param name="stage">The pipeline stage to build; null for the whole model.</param>
    /// <param name="device">Target device (default CPU).</param>
    /// <param name="dtype">Parameter dtype (default float32); stored tensors are converted.</param>
    public static Qwen3MoeForCausalLM Load(string folder, PipelineStageInfo? stage = null, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        var parameters = HuggingFaceConfig.Load(folder);
        CheckAgainstConfig(parameters, folder); // every header shape checked before the model is allocated
        var model = new Qwen3MoeForCausalLM(parameters, stage, device, dtype);
        try
        {
            LoadWeights(model, folder);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>
    /// Copies the checkpoint's tensors into <paramref name="model"/>'s parameters (only those of its stage). With extra
    /// vocabulary splits, the checkpoint fills the first split; every row of the extra splits (embedding and head) is then
    /// set to the mean row of the first split, as transformers' <c>resize_token_embeddings</c> starts new tokens (so they
    /// neither dominate nor vanish from the softmax), unless <paramref name="initializeAddedSplits"/> is false (keep the
    /// values they have, e.g. trained added tokens).
    /// </summary>
    /// <exception cref="InvalidDataException">A tensor is missing, unexpected or has the wrong shape; the message names the key and both shapes.</exception>
    public static void LoadWeights(Qwen3MoeForCausalLM model, string folder, bool initializeAddedSplits = true)
    {
        using var source = CheckpointFolder.Open(folder);
        CheckAgainstConfig(model.Parameters, source, folder);

        using var _ = no_grad();
        foreach (var (name, target) in model.UniqueNamedParameters().Where(np =>
            model.Lora?.IsAdapterParameter(np.Name) != true)) // LoRA factors are not in a base folder
        {
            foreach (var (hfKey, slice) in Sources(name, target, model.Parameters, source))
            {
                using var scope = NewDisposeScope();
                var dst = slice(target);
                var shape = source.GetEntry(hfKey).Shape;
                if (!shape.SequenceEqual(dst.shape))
                    throw new InvalidDataException($"{folder}: tensor '{hfKey}' has shape [{string.Join(", ", shape)}] but parameter '{name}' needs " +
                        $"[{string.Join(", ", dst.shape)}].");
                dst.copy_(source.ReadTensor(hfKey));
            }
        }
        if (initializeAddedSplits) InitializeAddedSplits(model);
        model.ResetMoeStats();
    }

    /// <summary>Sets every row of the vocabulary splits after the first to the mean row of the first split (embeddings and head).</summary>
    private static void InitializeAddedSplits(Qwen3MoeForCausalLM model)
    {
        var order = model.Parameters.Model.SplitVocabOrder;
        if (order.Count < 2) return;
        using var _ = no_grad();
        var tables = new List<Func<string, Parameter>>();
        if (model.model.embed_tokens is { } embeddings) tables.Add(embeddings.Weight);
        if (model.lm_head is { IsTied: false } head) tables.Add(head.Weight);
        foreach (var table in tables)
        {
            using var scope = NewDisposeScope();
            var mean = table(order[0]).to(ScalarType.Float32).mean(new long[] { 0 }, keepdim: true);      // [1,H]
            foreach (var split in order.Skip(1)) table(split).copy_(mean.expand_as(table(split)));
        }
    }

    /// <summary>
    /// Exports a whole (single-stage) model as a Hugging Face folder: per-expert keys, sharded by
    /// <paramref name="maxShardBytes"/>, <c>config.json</c>.
    /// </summary>
    public static void Save(Qwen3MoeForCausalLM model, string folder, long maxShardBytes = DefaultMaxShardBytes) =>
        Save(new[] { model }, folder, maxShardBytes);

    /// <summary>
    /// Exports the stages of one model (together they must own every layer) as one Hugging Face folder, written
    /// atomically together with <paramref name="extraTextFiles"/> (e.g. tokenizer files: name to UTF-8 text).
    /// </summary>
    public static void Save(IReadOnlyList<Qwen3MoeForCausalLM> stages, string folder, long maxShardBytes = DefaultMaxShardBytes,
        IReadOnlyDictionary<string, string>? extraTextFiles = null)
    {
        if (stages.Count == 0) throw new ArgumentException("No model stage to save.", nameof(stages));
        if (stages.Any(s => s.Lora is { Merged: false }))
            throw new InvalidOperationException("The model has unmerged LoRA adapters: merge them first (LoraAdapters.MergeIntoBase) " +
                "or save the adapter alone (PeftAdapter.Save).");
        var p = stages[0].Parameters;
        var owned = stages.SelectMany(s => Enumerable.Range(s.Model.FirstLayer, s.Model.EndLayer - s.Model.FirstLayer)).OrderBy(i => i).ToList();
        if (!owned.SequenceEqual(Enumerable.Range(0, p.Model.NumHiddenLayers)) || !stages.Any(s => s.Stage.IsFirst) || !stages.Any(s => s.Stage.IsLast))
            throw new ArgumentException("The stages given do not form one whole model (each layer, the embeddings and the head exactly once).", nameof(stages));
        var files = new Dictionary<string, string>(extraTextFiles ?? new Dictionary<string, string>())
        {
            ["config.json"] = HuggingFaceConfig.ToJson(p, stages[0].DType),
        };
        CheckpointFolderWriter.Write(folder, ExportTensors(stages), maxShardBytes, files);
    }

    /// <summary>
    /// Yields HF-named views of the parameters (the writer copies each to the host, one at a time, in its own scope),
    /// so export memory stays small.
    /// </summary>
    private static IEnumerable<KeyValuePair<string, Tensor>> ExportTensors(IReadOnlyList<Qwen3MoeForCausalLM> stages)
    {
        var p = stages[0].Parameters;
        int experts = p.Model.Layer.NumExperts, inter = p.Model.Layer.MoeIntermediateSize;
        foreach (var stage in stages)
        {
            foreach (var (name, param) in stage.UniqueNamedParameters().Where(np =>
                stage.Lora?.IsAdapterParameter(np.Name) != true)) // LoRA factors: PeftAdapter.Save
            {
                var t = param.detach();
                if (name.StartsWith("model.embed_tokens.", StringComparison.Ordinal) || name.StartsWith("lm_head.", StringComparison.Ordinal))
                {
                    if (!name.EndsWith("." + p.Model.SplitVocabOrder[0] + ".weight", StringComparison.Ordinal)) continue; // merged below
                    var merged = MergedSplits(stage, name.StartsWith("lm_head.", StringComparison.Ordinal));
                    yield return new(name.StartsWith("lm_head.", StringComparison.Ordinal) ? "lm_head.weight" : "model.embed_tokens.weight", merged);
                }
                else if (name.EndsWith(".mlp.experts.gate_up_proj", StringComparison.Ordinal))
                {
                    var prefix = name[..^"gate_up_proj".Length];
                    for (int e = 0; e < experts; e++)
                    {
                        yield return new($"{prefix}{e}.gate_proj.weight", t[e].narrow(0, 0, inter));
                        yield return new($"{prefix}{e}.up_proj.weight", t[e].narrow(0, inter, inter));
                    }
                }
                else if (name.EndsWith(".mlp.experts.down_proj", StringComparison.Ordinal))
                {
                    var prefix = name[..^"down_proj".Length];
                    for (int e = 0; e < experts; e++) yield return new($"{prefix}{e}.down_proj.weight", t[e]);
                }
                else
                {
                    yield return new(name, t);
                }
            }
        }
    }

    private static Tensor MergedSplits(Qwen3MoeForCausalLM stage, bool head)
    {
        var order = stage.Parameters.Model.SplitVocabOrder;
        var tables = order.Select(n => head ? stage.lm_head!.Weight(n).detach() : stage.model.embed_tokens!.Weight(n).detach()).ToArray();
        return tables.Length == 1 ? tables[0] : cat(tables, 0);
    }

    /// <summary>Where each HF tensor lands in a parameter: the HF key and a function selecting the destination view.</summary>
    private static IEnumerable<(string HfKey, Func<Tensor, Tensor> Slice)>
        Sources(string name, Tensor target, Qwen3MoeForCausalLMParameters p, CheckpointFolder source)
    {
        var firstSplit = p.Model.SplitVocabOrder[0];
        if (name.StartsWith("model.embed_tokens.token_embedding.", StringComparison.Ordinal))
        {
            if (name == $"model.embed_tokens.token_embedding.{firstSplit}.weight") yield return ("model.embed_tokens.weight", t => t);
            yield break; // extra splits keep their initial values
        }
        if (name.StartsWith("lm_head.lm_head.", StringComparison.Ordinal))
        {
            if (name == $"lm_head.lm_head.{firstSplit}.weight") yield return ("lm_head.weight", t => t);
            yield break;
        }
        int inter = p.Model.Layer.MoeIntermediateSize, experts = p.Model.Layer.NumExperts;
        if (name.EndsWith(".mlp.experts.gate_up_proj", StringComparison.Ordinal) && !source.Contains(name))
        {
            var prefix = name[..^"gate_up_proj".Length];
            for (int e = 0; e < experts; e++)
            {
                int ee = e;
                yield return ($"{prefix}{e}.gate_proj.weight", t => t[ee].narrow(0, 0, inter));
                yield return ($"{prefix}{e}.up_proj.weight", t => t[ee].narrow(0, inter, inter));
            }
            yield break;
        }
        if (name.EndsWith(".mlp.experts.down_proj", StringComparison.Ordinal) && !source.Contains(name))
        {
            var prefix = name[..^"down_proj".Length];
            for (int e = 0; e < experts; e++)
            {
                int ee = e;
                yield return ($"{prefix}{e}.down_proj.weight", t => t[ee]);
            }
            yield break;
        }
        yield return (name, t => t); // every other key is named as in HF (fused experts included)
    }

    /// <summary>
    /// Checks the checkpoint in <paramref name="folder"/> against <paramref name="p"/> from the safetensors headers alone
    /// (no tensor data is read, no model allocated): every key the config needs is present, none is unexpected, and each
    /// has the shape the config implies.
    /// </summary>
    /// <exception cref="InvalidDataException">A tensor is missing, unexpected or of another shape; the message names the key and both shapes.</exception>
    internal static void CheckAgainstConfig(Qwen3MoeForCausalLMParameters p, string folder)
    {
        using var source = CheckpointFolder.Open(folder);
        CheckAgainstConfig(p, source, folder);
    }

    private static void CheckAgainstConfig(Qwen3MoeForCausalLMParameters p, CheckpointFolder source, string folder)
    {
        var expected = ExpectedShapes(p, source);
        var unexpected = source.Keys.Where(k => !expected.ContainsKey(k) && !IsIgnorable(k, p)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (unexpected.Count > 0)
            throw new InvalidDataException($"{folder}: unexpected tensor(s) in the checkpoint: " +
                $"{string.Join(", ", unexpected.Take(10))}{(unexpected.Count > 10 ? ", ..." : "")}.");
        var missing = expected.Keys.Where(k => !source.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{folder}: missing tensor(s) in the checkpoint: " +
                $"{string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")}.");
        foreach (var (key, shape) in expected)
        {
            var stored = source.GetEntry(key).Shape;
            if (!stored.SequenceEqual(shape))
                throw new InvalidDataException($"{folder}: tensor '{key}' has shape [{string.Join(", ", stored)}] but the config (config.json) needs " +
                    $"[{string.Join(", ", shape)}].");
        }
    }

    /// <summary>Every HF key the whole model needs and its shape, choosing per layer between the per-expert and the fused expert layout.</summary>
    private static Dictionary<string, long[]> ExpectedShapes(Qwen3MoeForCausalLMParameters p, CheckpointFolder source)
    {
        var m = p.Model;
        var l = m.Layer;
        long h = l.HiddenSize, vocab = m.SplitVocabSize[m.SplitVocabOrder[0]];
        long q = (long)l.NumAttentionHeads * l.HeadDim, kv = (long)l.NumKeyValueHeads * l.HeadDim;
        long inter = l.MoeIntermediateSize, dense = l.IntermediateSize, experts = l.NumExperts;
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal) { ["model.embed_tokens.weight"] = [vocab, h], ["model.norm.weight"] = [h] };
        if (!p.TieWordEmbeddings) shapes["lm_head.weight"] = [vocab, h];
        var attn = new Dictionary<string, long[]>
        {
            ["q_proj.weight"] = [q, h], ["k_proj.weight"] = [kv, h], ["v_proj.weight"] = [kv, h], ["o_proj.weight"] = [h, q],
            ["q_norm.weight"] = [l.HeadDim], ["k_norm.weight"] = [l.HeadDim],
        };
        if (l.AttentionBias)
        {
            attn["q_proj.bias"] = [q];
            attn["k_proj.bias"] = [kv];
            attn["v_proj.bias"] = [kv];
            attn["o_proj.bias"] = [h];
        }
        for (int i = 0; i < m.NumHiddenLayers; i++)
        {
            var prefix = "model.layers." + i.ToString(CultureInfo.InvariantCulture) + ".";
            shapes[prefix + "input_layernorm.weight"] = [h];
            shapes[prefix + "post_attention_layernorm.weight"] = [h];
            foreach (var (name, shape) in attn) shapes[prefix + "self_attn." + name] = shape;
            if (!m.IsSparseLayer(i))
            {
                shapes[prefix + "mlp.gate_proj.weight"] = [dense, h];
                shapes[prefix + "mlp.up_proj.weight"] = [dense, h];
                shapes[prefix + "mlp.down_proj.weight"] = [h, dense];
                continue;
            }
            shapes[prefix + "mlp.gate.weight"] = [experts, h];
            if (source.Contains(prefix + "mlp.experts.gate_up_proj") || source.Contains(prefix + "mlp.experts.down_proj"))
            {
                shapes[prefix + "mlp.experts.gate_up_proj"] = [experts, 2 * inter, h];
                shapes[prefix + "mlp.experts.down_proj"] = [experts, h, inter];
                continue;
            }
            for (int e = 0; e < experts; e++)
            {
                var expert = prefix + "mlp.experts." + e.ToString(CultureInfo.InvariantCulture) + ".";
                shapes[expert + "gate_proj.weight"] = [inter, h];
                shapes[expert + "up_proj.weight"] = [inter, h];
                shapes[expert + "down_proj.weight"] = [h, inter];
            }
        }
        return shapes;
    }

    /// <summary>Keys some writers add that carry nothing we need: a redundant tied head and RoPE caches.</summary>
    private static bool IsIgnorable(string key, Qwen3MoeForCausalLMParameters p) =>
        (p.TieWordEmbeddings && key == "lm_head.weight") || key.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);
}
