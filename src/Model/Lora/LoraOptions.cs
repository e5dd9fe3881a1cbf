namespace Microsoft.ML.Qwen3Moe.Lora;

/// <summary>Settings of a LoRA adapter (PEFT's <c>LoraConfig</c> subset that this library implements).</summary>
public sealed record LoraOptions
{
    /// <summary>Rank r of every low-rank pair (PEFT's <c>r</c>). Default 16.</summary>
    public int Rank { get; init; } = 16;

    /// <summary>Scale numerator (PEFT's <c>lora_alpha</c>): the update is <c>alpha / r · B·A</c> (or <c>alpha / √r</c> with <see cref="UseRsLora"/>). Default
    /// 32.</summary>
    public double Alpha { get; init; } = 32;

    /// <summary>Dropout probability on the adapter's input while training (PEFT's <c>lora_dropout</c>). Default 0.
    /// PEFT refuses non-zero dropout on expert targets; this library applies it there too, so such an adapter loads here but not in PEFT.</summary>
    public double Dropout { get; init; }

    /// <summary>Rank-stabilised scaling <c>alpha / √r</c> (PEFT's <c>use_rslora</c>). Default false.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>What the adapter reaches. Default <see cref="LoraTargets.Default"/> (attention and routed experts).</summary>
    public LoraTargets Targets { get; init; } = LoraTargets.Default;

    /// <summary>
    /// Per-target rank overrides (PEFT's <c>rank_pattern</c>): a regular expression matched against the end of the
    /// target's Hugging Face name (<c>model.layers.3.self_attn.q_proj</c>, <c>model.layers.3.mlp.experts.gate_up_proj</c>).
    /// Default none.
    /// </summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();

    /// <summary>Per-target alpha overrides (PEFT's <c>alpha_pattern</c>), matched as <see cref="RankPattern"/>. Default none.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = new Dictionary<string, double>();

    /// <summary>
    /// dtype of the adapter factors; null (default) keeps the base model's dtype, so bf16 adapters run through the same
    /// bf16 kernels as the base (use the trainer's float32 master weights for float32 optimizer state). Float32 adapters on
    /// a bf16 base compute the low-rank path in float32 (PEFT's default); on CUDA the experts' path then loops per expert.
    /// </summary>
    public TorchSharp.torch.ScalarType? AdapterDType { get; init; }

    /// <summary>Seed of the A factors' initialisation (per factor, keyed by its name, so pipeline splits agree). Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>The defaults: r 16, alpha 32, no dropout, attention and experts.</summary>
    public static LoraOptions Default() => new();

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (Rank <= 0) throw new ArgumentOutOfRangeException(nameof(Rank), Rank, $"LoRA rank must be positive, got {Rank}.");
        if (!double.IsFinite(Alpha) || Alpha <= 0) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha,
            $"LoRA alpha must be a positive finite number, got {Alpha}.");
        if (Dropout is < 0 or >= 1 || double.IsNaN(Dropout)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout,
            $"LoRA dropout must be in [0, 1), got {Dropout}.");
        if ((Targets & (LoraTargets.Attention | LoraTargets.Experts | LoraTargets.DenseMlp | LoraTargets.Router | LoraTargets.LmHead)) == LoraTargets.None)
            throw new ArgumentOutOfRangeException(nameof(Targets), Targets, "LoRA needs at least one target.");
        foreach (var (pattern, r) in RankPattern)
            if (r <= 0) throw new ArgumentOutOfRangeException(nameof(RankPattern), r, $"LoRA rank_pattern '{pattern}' has rank {r}; ranks must be positive.");
        foreach (var (pattern, a) in AlphaPattern)
            if (!double.IsFinite(a) || a <= 0) throw new ArgumentOutOfRangeException(nameof(AlphaPattern), a,
                $"LoRA alpha_pattern '{pattern}' has alpha {a}; it must be positive.");
        if (AdapterDType is { } dt
            && dt is not (TorchSharp.torch.ScalarType.Float32 or TorchSharp.torch.ScalarType.BFloat16
                or TorchSharp.torch.ScalarType.Float16 or TorchSharp.torch.ScalarType.Float64))
            throw new ArgumentOutOfRangeException(nameof(AdapterDType), dt, $"LoRA adapter dtype must be floating point, got {dt}.");
    }

    /// <summary>Rank and alpha for the target named <paramref name="hfName"/> (patterns first, PEFT's rule: the first pattern <c>(.*\.)?(pattern)$</c>
    /// matches).</summary>
    internal (int Rank, double Alpha) For(string hfName)
    {
        int r = Rank;
        double a = Alpha;
        foreach (var (pattern, pr) in RankPattern)
            if (PatternMatches(pattern, hfName)) { r = pr; break; }
        foreach (var (pattern, pa) in AlphaPattern)
            if (PatternMatches(pattern, hfName)) { a = pa; break; }
        return (r, a);
    }

    /// <summary>The factor of the update: <c>alpha / r</c>, or <c>alpha / √r</c> with rsLoRA.</summary>
    internal double Scaling(int rank, double alpha) => UseRsLora ? alpha / Math.Sqrt(rank) : alpha / rank;

    internal static bool PatternMatches(string pattern, string name) =>
        System.Text.RegularExpressions.Regex.IsMatch(name, $"^(.*\\.)?({pattern})$", System.Text.RegularExpressions.RegexOptions.CultureInvariant,
            TimeSpan.FromSeconds(1));
}
