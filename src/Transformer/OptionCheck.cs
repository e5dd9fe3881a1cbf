namespace Microsoft.ML.Qwen3Moe;

/// <summary>Always-on checks of user options (never <c>Debug.Assert</c>): each failure names the option and its value.</summary>
internal static class OptionCheck
{
    public static void That(bool condition, string option, object? value, string rule)
    {
        if (!condition) throw new ArgumentOutOfRangeException(option, value, $"{option} = {value ?? "null"}: {rule}");
    }

    public static void NonEmpty(string? value, string option) =>
        That(!string.IsNullOrWhiteSpace(value), option, value, "must be a non-empty column name.");
}
