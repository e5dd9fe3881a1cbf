using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>Numeric precision of the model's weights and activations.</summary>
public enum Qwen3MoePrecision
{
    /// <summary>32-bit floats everywhere (exact reference numerics; the default).</summary>
    Float32,

    /// <summary>bfloat16 weights and activations; norms, softmax, router and the loss stay in float32 (half the memory).</summary>
    BFloat16,
}

/// <summary>Maps <see cref="Qwen3MoePrecision"/> to TorchSharp dtypes.</summary>
internal static class Qwen3MoePrecisionExtensions
{
    public static ScalarType ToScalarType(this Qwen3MoePrecision precision) => precision switch
    {
        Qwen3MoePrecision.Float32 => ScalarType.Float32,
        Qwen3MoePrecision.BFloat16 => ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, "Unknown precision."),
    };
}
