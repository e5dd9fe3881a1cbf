using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Lora;

/// <summary>
/// A low-rank pair on one <see cref="Linear"/>: <c>y = W·x + s · B·A·dropout(x)</c>, with A [r,in] and B [out,r] registered
/// on the linear as <c>lora_A</c> and <c>lora_B</c> (so the parameter names are PEFT's, e.g.
/// <c>model.layers.0.self_attn.q_proj.lora_A.weight</c>), and the update added by a forward hook: the attention and MLP
/// call their projections through <c>call</c>, and the linear's own weight is never touched.
/// </summary>
internal sealed class LinearAdapter
{
    private readonly Scalar _scaling;

    private LinearAdapter(Linear target, string hfName, int rank, double alpha, double scaling, double dropout, ScalarType dtype)
    {
        Target = target;
        HfName = hfName;
        Rank = rank;
        Alpha = alpha;
        Scaling = scaling;
        Dropout = dropout;
        var device = target.weight!.device;
        long inFeatures = target.weight.shape[1], outFeatures = target.weight.shape[0];
        A = nn.Linear(inFeatures, rank, hasBias: false, device: device, dtype: dtype);       // weight [r,in]
        B = nn.Linear(rank, outFeatures, hasBias: false, device: device, dtype: dtype);      // weight [out,r]
        _scaling = scaling.ToScalar();
        target.register_module("lora_A", A);
        target.register_module("lora_B", B);
        target.register_forward_hook((m, x, y) => Active ? Apply(x, y) : y);
    }

    /// <summary>The adapted linear.</summary>
    public Linear Target { get; }

    /// <summary>Hugging Face name of the adapted module (<c>model.layers.0.self_attn.q_proj</c>).</summary>
    public string HfName { get; }

    /// <summary>Rank r.</summary>
    public int Rank { get; }

    /// <summary>The alpha this pair was built with.</summary>
    public double Alpha { get; }

    /// <summary>s: alpha/r or alpha/√r.</summary>
    public double Scaling { get; }

    /// <summary>Dropout on the adapter input while training.</summary>
    public double Dropout { get; }

    /// <summary>A: [r,in].</summary>
    public Linear A { get; }

    /// <summary>B: [out,r].</summary>
    public Linear B { get; }

    /// <summary>False once merged into the base weight (the hook then adds nothing).</summary>
    public bool Active { get; set; } = true;

    /// <summary>Creates the pair on <paramref name="target"/>; A and B are left uninitialised (see <see cref="LoraAdapters"/>).</summary>
    public static LinearAdapter Attach(Linear target, string hfName, int rank, double alpha, LoraOptions options, ScalarType dtype) =>
        new(target, hfName, rank, alpha, options.Scaling(rank, alpha), options.Dropout, dtype);

    /// <summary><paramref name="y"/> + s·B·A·dropout(x), in A's dtype, cast back to y's.</summary>
    private Tensor Apply(Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        var h = x.dtype == A.weight!.dtype ? x : x.to(A.weight.dtype);
        if (Dropout > 0 && Target.training) h = nn.functional.dropout(h, Dropout, training: true);
        var delta = B.call(A.call(h));                                                        // [...,out]
        if (delta.dtype != y.dtype) delta = delta.to(y.dtype);
        return y.add(delta, _scaling).MoveToOuterDisposeScope();
    }

    /// <summary>s·B·A [out,in] in float32.</summary>
    public Tensor DeltaWeight()
    {
        using var scope = NewDisposeScope();
        using var s = Scaling.ToScalar();
        return B.weight!.to(ScalarType.Float32).matmul(A.weight!.to(ScalarType.Float32)).mul(s).MoveToOuterDisposeScope();
    }
}
