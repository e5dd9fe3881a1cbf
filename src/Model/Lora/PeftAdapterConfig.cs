using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Safetensors;

namespace Microsoft.ML.Qwen3Moe.Lora;

/// <summary>
/// <c>adapter_config.json</c> as Hugging Face PEFT 0.21 reads and writes it for a LoRA adapter. Reading refuses every
/// setting this library does not implement (DoRA, biases, fan-in/fan-out, layer selection, ...) with a message naming it;
/// writing emits PEFT's full key set, sorted, with PEFT's defaults for what LoRA here does not use.
/// </summary>
internal static class PeftAdapterConfig
{
    public const string FileName = "adapter_config.json";

    /// <summary>The LoRA settings of <c>folder/adapter_config.json</c> (targets are filled from the weights by the caller).</summary>
    /// <exception cref="FileNotFoundException">No config file.</exception>
    /// <exception cref="InvalidDataException">Not valid JSON, or a field of the wrong type; the message names it.</exception>
    /// <exception cref="NotSupportedException">A PEFT feature this library does not implement; the message names the field.</exception>
    public static LoraOptions Read(string folder)
    {
        var path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"'{folder}' is not a PEFT adapter folder: {FileName} is missing.", path);
        InvalidDataException Invalid(string problem, Exception? inner = null) => new($"{path}: {problem}", inner);
        using var doc = UntrustedJson.Parse(File.ReadAllBytes(path), 16, FileName, Invalid);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw Invalid("the root is not a JSON object.");
        var fields = UntrustedJson.UniqueProperties(root, FileName, Invalid).ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal);
        JsonElement? Get(string name) => fields.TryGetValue(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
        void Refuse(string name, Func<JsonElement, bool> isDefault, string what)
        {
            if (Get(name) is { } v && !isDefault(v)) throw new NotSupportedException($"{path}: '{name}' = {v.GetRawText()} is not supported ({what}).");
        }
        var type = Get("peft_type")?.GetString();
        if (type is not null && type != "LORA") throw new NotSupportedException($"{path}: peft_type '{type}' is not supported; only LORA adapters are.");
        static bool False(JsonElement v) => v.ValueKind == JsonValueKind.False;
        Refuse("use_dora", False, "DoRA");
        Refuse("lora_bias", False, "LoRA biases");
        Refuse("fan_in_fan_out", False, "transposed base weights");
        Refuse("use_qalora", False, "QA-LoRA");
        Refuse("bias", v => v.ValueKind == JsonValueKind.String && v.GetString() == "none", "trained biases");
        Refuse("layers_to_transform", _ => false, "layer selection: the weights list the adapted modules");
        Refuse("layer_replication", _ => false, "layer replication");
        Refuse("trainable_token_indices", _ => false, "trainable tokens");
        Refuse("exclude_modules", v => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0, "excluded modules");
        Refuse("alora_invocation_tokens", _ => false, "activated LoRA");
        int rank = Int(Get("r") ?? throw Invalid("'r' is missing."), "r", Invalid);
        double alpha = Get("lora_alpha") is { } a ? Number(a, "lora_alpha", Invalid) : 8; // PEFT's default
        double dropout = Get("lora_dropout") is { } d ? Number(d, "lora_dropout", Invalid) : 0;
        bool rs = Get("use_rslora") is { } r && r.ValueKind == JsonValueKind.True;
        var rankPattern = Get("rank_pattern") is { } rp ? Map(rp, "rank_pattern", v => Int(v, "rank_pattern", Invalid), Invalid) : new Dictionary<string,
            int>();
        var alphaPattern = Get("alpha_pattern") is { } ap ? Map(ap, "alpha_pattern", v => Number(v, "alpha_pattern", Invalid), Invalid)
            : new Dictionary<string, double>();
        var options = new LoraOptions { Rank = rank, Alpha = alpha, Dropout = dropout, UseRsLora = rs, RankPattern = rankPattern, AlphaPattern = alphaPattern };
        try
        {
            options.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw Invalid(e.Message, e);
        }
        return options;
    }

    private static int Int(JsonElement v, string name, UntrustedJson.Invalid invalid) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : throw invalid($"'{name}' must be an integer, got {v.GetRawText()}.");

    private static double Number(JsonElement v, string name, UntrustedJson.Invalid invalid) =>
        v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw invalid($"'{name}' must be a number, got {v.GetRawText()}.");

    private static Dictionary<string, T> Map<T>(JsonElement v, string name, Func<JsonElement, T> value, UntrustedJson.Invalid invalid)
    {
        if (v.ValueKind != JsonValueKind.Object) throw invalid($"'{name}' must be an object.");
        return UntrustedJson.UniqueProperties(v, name, invalid).ToDictionary(p => p.Name, p => value(p.Value), StringComparer.Ordinal);
    }

    /// <summary>The JSON PEFT 0.21 writes for these adapters (keys sorted, two-space indent).</summary>
    public static string ToJson(LoraOptions o, IEnumerable<string> targetModules, IEnumerable<string> targetParameters, IEnumerable<string> modulesToSave,
        string? baseModelNameOrPath)
    {
        var fields = new SortedDictionary<string, Action<Utf8JsonWriter>>(StringComparer.Ordinal);
        void Null(string k) => fields[k] = w => w.WriteNull(k);
        void Bool(string k, bool b) => fields[k] = w => w.WriteBoolean(k, b);
        void Str(string k, string? s) => fields[k] = w => { if (s is null) w.WriteNull(k); else w.WriteString(k, s); };
        void Num(string k, double d) => fields[k] = w => { if (d == Math.Floor(d) && Math.Abs(d) < 1e15) w.WriteNumber(k, (long)d); else w.WriteNumber(k, d); };
        void List(string k, IEnumerable<string> items)
        {
            var list = items.ToList();
            fields[k] = w =>
            {
                if (list.Count == 0) { w.WriteNull(k); return; }
                w.WriteStartArray(k);
                foreach (var s in list) w.WriteStringValue(s);
                w.WriteEndArray();
            };
        }
        void Obj<T>(string k, IReadOnlyDictionary<string, T> map, Action<Utf8JsonWriter, string, T> write) => fields[k] = w =>
        {
            w.WriteStartObject(k);
            foreach (var (kk, vv) in map.OrderBy(x => x.Key, StringComparer.Ordinal)) write(w, kk, vv);
            w.WriteEndObject();
        };
        foreach (var k in new[] { "alora_invocation_tokens", "arrow_config", "corda_config", "eva_config", "exclude_modules", "kasa_config",
            "layer_replication",
                     "layers_pattern", "layers_to_transform", "lora_ga_config", "megatron_config", "monteclora_config", "revision", "task_type",
                         "trainable_token_indices",
                     "use_bdlora", "velora_config" })
            Null(k);
        Obj("alpha_pattern", o.AlphaPattern, (w, k, v) => { if (v == Math.Floor(v)) w.WriteNumber(k, (long)v); else w.WriteNumber(k, v); });
        Obj("rank_pattern", o.RankPattern, (w, k, v) => w.WriteNumber(k, v));
        fields["auto_mapping"] = w =>
        {
            w.WriteStartObject("auto_mapping");
            w.WriteString("base_model_class", "Qwen3MoeForCausalLM");
            w.WriteString("parent_library", "transformers.models.qwen3_moe.modeling_qwen3_moe");
            w.WriteEndObject();
        };
        Str("base_model_name_or_path", baseModelNameOrPath);
        Str("bias", "none");
        Bool("ensure_weight_tying", false);
        Bool("fan_in_fan_out", false);
        Bool("inference_mode", true);
        Bool("init_lora_weights", true);
        fields["loftq_config"] = w => { w.WriteStartObject("loftq_config"); w.WriteEndObject(); };
        Num("lora_alpha", o.Alpha);
        Bool("lora_bias", false);
        fields["lora_dropout"] = w => w.WriteNumber("lora_dropout", o.Dropout);
        Str("megatron_core", "megatron.core");
        List("modules_to_save", modulesToSave);
        Str("peft_type", "LORA");
        Str("peft_version", "0.21.0");
        Num("qalora_group_size", 16);
        Num("r", o.Rank);
        List("target_modules", targetModules);
        List("target_parameters", targetParameters);
        Bool("use_dora", false);
        Bool("use_qalora", false);
        Bool("use_rslora", o.UseRsLora);
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            foreach (var write in fields.Values) write(json);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }
}
