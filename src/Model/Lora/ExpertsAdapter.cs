using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Lora;

/// <summary>
/// Per-expert low-rank pairs on the stacked routed experts, applied inside <see cref="GroupedExperts"/> through the same
/// grouped matmul as the base weights: <c>gu += s · (x·A_eᵀ)·B_eᵀ</c> over the rows of each expert e, never forming an
/// [E,2I,H] delta. Factors (registered on the experts module): <c>gate_up_proj_lora_A</c> [E,r,H],
/// <c>gate_up_proj_lora_B</c> [E,2I,r], <c>down_proj_lora_A</c> [E,r',I], <c>down_proj_lora_B</c> [E,H,r']. PEFT's
/// <c>ParamWrapper</c> stores the same numbers as <c>lora_A</c> [r·E,in] (row e·r+j = A_e[j]) and <c>lora_B</c>
/// [out,r·E] (column j·E+e = B_e[:,j]); <see cref="PeftAdapter"/> converts.
/// </summary>
internal sealed class ExpertsAdapter
{
    private readonly Scalar? _gateUpScaling, _downScaling;

    private ExpertsAdapter(GroupedExperts experts, string hfPrefix, (int Rank, double Alpha)? gateUp, (int Rank, double Alpha)? down, LoraOptions options,
        ScalarType dtype)
    {
        Experts = experts;
        HfPrefix = hfPrefix;
        Dropout = options.Dropout;
        var device = experts.gate_up_proj.device;
        long e = experts.gate_up_proj.shape[0], twoI = experts.gate_up_proj.shape[1], h = experts.gate_up_proj.shape[2], inter = experts.down_proj.shape[2];
        if (gateUp is { } gu)
        {
            GateUp = new Pair(gu.Rank, gu.Alpha, options.Scaling(gu.Rank, gu.Alpha),
                new Parameter(empty(new[] { e, gu.Rank, h }, dtype: dtype, device: device)),
                new Parameter(empty(new[] { e, twoI, (long)gu.Rank }, dtype: dtype, device: device)));
            _gateUpScaling = GateUp.Scaling.ToScalar();
            experts.register_parameter("gate_up_proj_lora_A", GateUp.A);
            experts.register_parameter("gate_up_proj_lora_B", GateUp.B);
        }
        if (down is { } d)
        {
            Down = new Pair(d.Rank, d.Alpha, options.Scaling(d.Rank, d.Alpha),
                new Parameter(empty(new[] { e, d.Rank, inter }, dtype: dtype, device: device)),
                new Parameter(empty(new[] { e, h, (long)d.Rank }, dtype: dtype, device: device)));
            _downScaling = Down.Scaling.ToScalar();
            experts.register_parameter("down_proj_lora_A", Down.A);
            experts.register_parameter("down_proj_lora_B", Down.B);
        }
        experts.Adapter = this;
    }

    /// <summary>One low-rank pair over all experts: A [E,r,in], B [E,out,r].</summary>
    internal sealed record Pair(int Rank, double Alpha, double Scaling, Parameter A, Parameter B);

    /// <summary>The adapted experts.</summary>
    public GroupedExperts Experts { get; }

    /// <summary>Hugging Face name of the experts module (<c>model.layers.0.mlp.experts</c>).</summary>
    public string HfPrefix { get; }

    /// <summary>Dropout on the adapter inputs while training.</summary>
    public double Dropout { get; }

    /// <summary>The pair on <c>gate_up_proj</c>, or null.</summary>
    public Pair? GateUp { get; }

    /// <summary>The pair on <c>down_proj</c>, or null.</summary>
    public Pair? Down { get; }

    /// <summary>False once merged into the base weights.</summary>
    public bool Active { get; set; } = true;

    /// <summary>Whether any factor records gradients.</summary>
    public bool RequiresGrad => Active && ((GateUp?.A.requires_grad ?? false) || (GateUp?.B.requires_grad ?? false) || (Down?.A.requires_grad ?? false)
        || (Down?.B.requires_grad ?? false));

    /// <summary>Creates the pairs (uninitialised; see <see cref="LoraAdapters"/>) and hooks them into <paramref name="experts"/>.</summary>
    public static ExpertsAdapter Attach(GroupedExperts experts, string hfPrefix, (int Rank, double Alpha)? gateUp, (int Rank, double Alpha)? down,
        LoraOptions options, ScalarType dtype)
    {
        if (experts.Adapter is not null) throw new InvalidOperationException($"'{hfPrefix}' already has a LoRA adapter.");
        return new ExpertsAdapter(experts, hfPrefix, gateUp, down, options, dtype);
    }

    /// <param name="y">[N,2I] base gate/up rows, sorted by expert.</param>
    /// <param name="x">[N,H] the rows' inputs.</param>
    /// <param name="offsets">[E] int32 group ends.</param>
    /// <param name="training">Whether dropout applies.</param>
    public Tensor AddGateUp(Tensor y, Tensor x, Tensor offsets, bool training) => GateUp is null || !Active ? y : Add(GateUp, _gateUpScaling!, y, x,
        offsets, training);

    /// <param name="y">[N,H] base down rows.</param>
    /// <param name="x">[N,I] the rows' inputs.</param>
    /// <param name="offsets">[E] int32 group ends.</param>
    /// <param name="training">Whether dropout applies.</param>
    public Tensor AddDown(Tensor y, Tensor x, Tensor offsets, bool training) => Down is null || !Active ? y : Add(Down, _downScaling!, y, x, offsets, training);

    private Tensor Add(Pair p, Scalar scaling, Tensor y, Tensor x, Tensor offsets, bool training)
    {
        using var scope = NewDisposeScope();
        var h = x.dtype == p.A.dtype ? x : x.to(p.A.dtype);
        if (Dropout > 0 && training) h = nn.functional.dropout(h, Dropout, training: true);
        var low = GroupedMatmul.Apply(h, p.A, offsets);                                           // [N,r]
        var delta = GroupedMatmul.Apply(low, p.B, offsets);                                       // [N,out]
        if (delta.dtype != y.dtype) delta = delta.to(y.dtype);
        return y.add(delta, scaling).MoveToOuterDisposeScope();
    }

    /// <summary>s·B_e·A_e for every expert, [E,out,in] float32 (for merging only).</summary>
    public static Tensor DeltaWeight(Pair p)
    {
        using var scope = NewDisposeScope();
        using var s = p.Scaling.ToScalar();
        return p.B.to(ScalarType.Float32).bmm(p.A.to(ScalarType.Float32)).mul(s).MoveToOuterDisposeScope();
    }
}
