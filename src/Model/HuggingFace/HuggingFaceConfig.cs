using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Safetensors;

namespace Microsoft.ML.Qwen3Moe.HuggingFace;

/// <summary>
/// Reads and writes a Hugging Face <c>config.json</c> for <c>Qwen3MoeForCausalLM</c>. Both spellings found in the wild
/// are read: <c>num_experts</c>/<c>rope_theta</c> (published checkpoints) and <c>num_local_experts</c>/<c>rope_parameters</c>
/// (transformers 5). Fields that would change the math but are not supported are errors, never ignored.
/// </summary>
public static class HuggingFaceConfig
{
    /// <summary>Most bytes a <c>config.json</c> may hold (real ones hold about 1 KB).</summary>
    public const long MaxConfigBytes = 16 << 20;

    /// <summary>Reads <c>config.json</c> from a model folder or a file path.</summary>
    /// <exception cref="FileNotFoundException">No config file.</exception>
    /// <exception cref="IOException">The path is not a regular file (a FIFO or device is never opened).</exception>
    /// <exception cref="FormatException">Invalid UTF-8 or JSON, a repeated key, more than <see cref="MaxConfigBytes"/>, a missing or mistyped
    /// field, or an unsupported setting; the message names the file and field.</exception>
    public static Qwen3MoeForCausalLMParameters Load(string path)
    {
        var file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"No Hugging Face config found at '{file}'.", file);
        byte[] bytes;
        try
        {
            bytes = RegularFile.ReadAllBytes(file, MaxConfigBytes);
        }
        catch (InvalidDataException e)
        {
            throw new FormatException(e.Message, e);
        }
        string json;
        try
        {
            json = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new FormatException($"{file}: not valid UTF-8 ({e.Message}).", e);
        }
        return Parse(json, file);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names it in error messages.</summary>
    public static Qwen3MoeForCausalLMParameters Parse(string json, string source = "config.json")
    {
        JsonObject root;
        try
        {
            // A repeated key would otherwise surface as ArgumentException without the file's name, or pick one value silently.
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 64 }) as JsonObject
                ?? throw new FormatException($"{source}: the top level must be a JSON object.");
        }
        catch (JsonException e)
        {
            throw new FormatException($"{source}: invalid JSON ({e.Message}).", e);
        }
        var r = new Reader(root, source);

        var modelType = r.String("model_type", null);
        if (modelType is not null && modelType != "qwen3_moe")
            throw new FormatException($"{source}: model_type '{modelType}' is not supported (expected 'qwen3_moe').");
        var act = r.String("hidden_act", "silu");
        if (act != "silu") throw new FormatException($"{source}: hidden_act '{act}' is not supported (only 'silu').");
        if (r.Bool("use_sliding_window", false)) throw new FormatException($"{source}: use_sliding_window = true is not supported.");
        var dropout = r.Double("attention_dropout", 0);
        if (dropout != 0) throw new FormatException($"{source}: attention_dropout = {dropout} is not supported (only 0).");

        double ropeTheta = ReadRope(r, root, source);

        int hidden = r.Int("hidden_size");
        int heads = r.Int("num_attention_heads");
        int experts = r.Has("num_experts") ? r.Int("num_experts") : r.Int("num_local_experts");
        var layer = new Qwen3MoeLayerParameters
        {
            HiddenSize = hidden,
            MoeIntermediateSize = r.Int("moe_intermediate_size"),
            IntermediateSize = r.Int("intermediate_size"),
            NumExperts = experts,
            ExpertsTopK = r.Int("num_experts_per_tok"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = r.Int("num_key_value_heads", heads),
            RmsNormEps = r.Double("rms_norm_eps", 1e-6),
            HeadDim = r.Int("head_dim", heads > 0 ? hidden / heads : 0),
            NormalizeTopKProbabilities = r.Bool("norm_topk_prob", true),
            AttentionBias = r.Bool("attention_bias", false),
        };
        int vocab = r.Int("vocab_size");
        var model = new Qwen3MoeParameters
        {
            Layer = layer,
            NumHiddenLayers = r.Int("num_hidden_layers"),
            RopeBase = ropeTheta,
            MaxPositionIds = r.Int("max_position_embeddings"),
            SplitVocabSize = new Dictionary<string, int> { [Qwen3MoeParameters.DefaultSplitName] = vocab },
            SplitVocabOrder = new[] { Qwen3MoeParameters.DefaultSplitName },
            MlpOnlyLayers = r.IntArray("mlp_only_layers"),
            DecoderSparseStep = r.Int("decoder_sparse_step", 1),
        };
        var p = new Qwen3MoeForCausalLMParameters
        {
            Model = model,
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            RouterAuxLossCoefficient = r.Double("router_aux_loss_coef", 0.001),
            InitializerRange = r.Double("initializer_range", 0.02),
        };
        try
        {
            p.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new FormatException($"{source}: {e.Message}", e);
        }
        return p;
    }

    private static double ReadRope(Reader r, JsonObject root, string source)
    {
        // transformers 5: rope_parameters {rope_type, rope_theta}; published checkpoints: rope_theta + rope_scaling.
        foreach (var key in new[] { "rope_scaling", "rope_parameters" })
        {
            if (root[key] is not JsonObject o) continue;
            var sub = new Reader(o, $"{source} {key}");
            var type = sub.String("rope_type", null) ?? sub.String("type", null) ?? "default";
            if (type != "default")
                throw new FormatException($"{source}: {key}.rope_type '{type}' is not supported (only 'default', i.e. no RoPE scaling).");
        }
        if (root["rope_parameters"] is JsonObject rp && rp["rope_theta"] is not null)
            return new Reader(rp, source + " rope_parameters").Double("rope_theta");
        return r.Double("rope_theta", 10000.0);
    }

    /// <summary>Writes the parameters as a transformers-compatible <c>config.json</c> (published-checkpoint spelling).</summary>
    /// <param name="p">The parameters (several vocabulary splits are written as their total size, as the export merges them).</param>
    /// <param name="dtype">The weights' dtype, written as <c>torch_dtype</c> (default float32).</param>
    public static string ToJson(Qwen3MoeForCausalLMParameters p, TorchSharp.torch.ScalarType dtype = TorchSharp.torch.ScalarType.Float32)
    {
        var m = p.Model;
        var l = m.Layer;
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("Qwen3MoeForCausalLM"),
            ["model_type"] = "qwen3_moe",
            ["vocab_size"] = m.VocabSize,
            ["hidden_size"] = l.HiddenSize,
            ["intermediate_size"] = l.IntermediateSize,
            ["moe_intermediate_size"] = l.MoeIntermediateSize,
            ["num_hidden_layers"] = m.NumHiddenLayers,
            ["num_attention_heads"] = l.NumAttentionHeads,
            ["num_key_value_heads"] = l.NumKeyValueHeads,
            ["head_dim"] = l.HeadDim,
            ["num_experts"] = l.NumExperts,
            ["num_experts_per_tok"] = l.ExpertsTopK,
            ["norm_topk_prob"] = l.NormalizeTopKProbabilities,
            ["decoder_sparse_step"] = m.DecoderSparseStep,
            ["mlp_only_layers"] = new JsonArray(m.MlpOnlyLayers.Select(i => (JsonNode)i).ToArray()),
            ["hidden_act"] = "silu",
            ["attention_bias"] = l.AttentionBias,
            ["attention_dropout"] = 0.0,
            ["rms_norm_eps"] = l.RmsNormEps,
            ["rope_theta"] = m.RopeBase,
            ["rope_scaling"] = null,
            ["max_position_embeddings"] = m.MaxPositionIds,
            ["tie_word_embeddings"] = p.TieWordEmbeddings,
            ["router_aux_loss_coef"] = p.RouterAuxLossCoefficient,
            ["initializer_range"] = p.InitializerRange,
            ["use_sliding_window"] = false,
            ["sliding_window"] = null,
            ["output_router_logits"] = false,
            ["torch_dtype"] = dtype switch
            {
                TorchSharp.torch.ScalarType.BFloat16 => "bfloat16",
                TorchSharp.torch.ScalarType.Float16 => "float16",
                _ => "float32",
            },
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Typed access to config fields with errors that name the file and field.</summary>
    private sealed class Reader(JsonObject root, string source)
    {
        public bool Has(string key) => root[key] is not null;

        private static JsonElement Element(JsonNode n) => JsonSerializer.SerializeToElement(n);

        public int Int(string key, int? fallback = null)
        {
            var n = root[key];
            if (n is null) return fallback ?? throw new FormatException($"{source}: required field '{key}' is missing.");
            var e = Element(n);
            if (e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out var d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue) return (int)d;
            throw new FormatException($"{source}: field '{key}' must be an integer, got {n.ToJsonString()}.");
        }

        public double Double(string key, double? fallback = null)
        {
            var n = root[key];
            if (n is null) return fallback ?? throw new FormatException($"{source}: required field '{key}' is missing.");
            var e = Element(n);
            if (e.ValueKind == JsonValueKind.Number) return e.GetDouble();
            throw new FormatException($"{source}: field '{key}' must be a number, got {n.ToJsonString()}.");
        }

        public bool Bool(string key, bool fallback)
        {
            var n = root[key];
            if (n is null) return fallback;
            var e = Element(n);
            return e.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new FormatException($"{source}: field '{key}' must be true or false, got {n.ToJsonString()}."),
            };
        }

        public string? String(string key, string? fallback)
        {
            var n = root[key];
            if (n is null) return fallback;
            var e = Element(n);
            if (e.ValueKind == JsonValueKind.String) return e.GetString();
            throw new FormatException($"{source}: field '{key}' must be a string, got {n.ToJsonString()}.");
        }

        public int[] IntArray(string key)
        {
            var n = root[key];
            if (n is null) return Array.Empty<int>();
            if (n is not JsonArray a) throw new FormatException($"{source}: field '{key}' must be an array of integers, got {n.ToJsonString()}.");
            return a.Select((x, i) =>
            {
                var e = x is null ? default : Element(x);
                if (x is not null && e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var v)) return v;
                throw new FormatException($"{source}: {key}[{i}] must be an integer, got {x?.ToJsonString() ?? "null"}.");
            }).ToArray();
        }
    }
}
