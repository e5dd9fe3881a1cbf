using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Kernels;

/// <summary>
/// The <see cref="Scalar"/>s our code hands to TorchSharp: always ones we own and keep alive past the call.
/// <para>Why: TorchSharp 0.107 turns a <c>double</c>/<c>float</c>/<c>int</c>/<c>long</c> argument into a temporary
/// <see cref="Scalar"/> and passes only its native handle on: an implicit conversion (<c>x.clamp_min(0)</c>,
/// <c>x.ne(-100)</c>), an operator with a number (<c>x * 0.5</c>), a TorchScript argument (<c>CompilationUnit.invoke</c>
/// does <c>((Scalar)d).Handle</c>), and even <c>a + b</c> / <c>add(t)</c>, which pass a temporary <c>alpha = 1</c>. Nothing
/// keeps the temporary alive, so when a garbage collection happens during the native call, the finalizer thread can free
/// the <c>c10::Scalar</c> while libtorch still reads it: <c>ExternalException: Expected false to be true</c> (from
/// <c>c10::Scalar::toLong</c>), a wrong value read silently (a learning rate, an epsilon), or a segfault.</para>
/// <para>So: constants are the static fields here (alive for the process); a value known at construction is a field of
/// its module (<c>Scalars.Of(eps)</c>); a per-call value is <c>using var s = Scalars.Of(value);</c> around the call
/// (disposed after it returns); tensors add with <see cref="Plus"/>. <c>TemporaryScalarScanTests</c> compiles src/ and
/// fails on any new temporary.</para>
/// </summary>
internal static class Scalars
{
    /// <summary>Integer 0.</summary>
    public static readonly Scalar Zero = 0L.ToScalar();

    /// <summary>Integer 1 (also the <c>alpha</c> of an addition).</summary>
    public static readonly Scalar One = 1L.ToScalar();

    /// <summary>The label that marks a position without a target (-100, <see cref="CausalLMLoss.IgnoreIndex"/>).</summary>
    public static readonly Scalar IgnoreIndex = CausalLMLoss.IgnoreIndex.ToScalar();

    /// <summary>Floating 1.0.</summary>
    public static readonly Scalar OneF = 1.0.ToScalar();

    /// <summary>Floating -1.0.</summary>
    public static readonly Scalar MinusOneF = (-1.0).ToScalar();

    /// <summary>A floating Scalar the caller owns: keep it in a field, or dispose it (<c>using</c>) after the call that reads it.</summary>
    public static Scalar Of(double value) => value.ToScalar();

    /// <summary>An integer Scalar the caller owns: keep it in a field, or dispose it (<c>using</c>) after the call that reads it.</summary>
    public static Scalar Of(long value) => value.ToScalar();

    /// <summary><c>a + b</c> without TorchSharp's temporary <c>alpha</c>.</summary>
    public static torch.Tensor Plus(this torch.Tensor a, torch.Tensor b) => a.add(b, One);

    /// <summary><c>t · factor</c> with an owned Scalar.</summary>
    public static torch.Tensor Times(this torch.Tensor t, double factor)
    {
        using var s = Of(factor);
        return t.mul(s);
    }

    /// <summary><c>t / divisor</c> with an owned Scalar.</summary>
    public static torch.Tensor Over(this torch.Tensor t, double divisor)
    {
        using var s = Of(divisor);
        return t.div(s);
    }
}
