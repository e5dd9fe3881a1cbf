namespace Microsoft.ML.Qwen3Moe.Configuration;

/// <summary>Checks shared by the parameter records: each failure names the field and the value.</summary>
internal static class Require
{
    public static void Positive(long value, string field)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(field, value, $"{field} must be positive, got {value}.");
    }

    public static void NonNegative(long value, string field)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(field, value, $"{field} must not be negative, got {value}.");
    }

    public static void PositiveFinite(double value, string field)
    {
        if (!(value > 0) || double.IsInfinity(value)) throw new ArgumentOutOfRangeException(field, value, $"{field} must be a positive finite number, got {value}.");
    }

    public static void That(bool condition, string field, object? value, string problem)
    {
        if (!condition) throw new ArgumentOutOfRangeException(field, value, $"{field} = {value}: {problem}");
    }
}
