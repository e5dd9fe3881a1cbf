namespace Microsoft.ML.Qwen3Moe.Configuration;

/// <summary>
/// The one validation helper of the solution (model parameters, training options, the ML.NET options): always-on checks,
/// never <c>Debug.Assert</c>; each failure is an <see cref="ArgumentOutOfRangeException"/> naming the field and its value.
/// </summary>
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
        if (!(value > 0) || double.IsInfinity(value)) throw new
            ArgumentOutOfRangeException(field, value, $"{field} must be a positive finite number, got {value}.");
    }

    public static void That(bool condition, string field, object? value, string problem)
    {
        if (!condition) throw new ArgumentOutOfRangeException(field, value, $"{field} = {value ?? "null"}: {problem}");
    }

    public static void NonEmpty(string? value, string field) =>
        That(!string.IsNullOrWhiteSpace(value), field, value, "must be a non-empty column name.");
}
