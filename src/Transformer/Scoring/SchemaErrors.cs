namespace Microsoft.ML.Qwen3Moe.Scoring;

/// <summary>ML.NET's two schema messages (as <c>Contracts.ExceptSchemaMismatch</c> words them), for estimator and transformer alike.</summary>
internal static class SchemaErrors
{
    private const string ParamName = "inputSchema";

    public static ArgumentOutOfRangeException NotFound(string role, string name, string paramName = ParamName) =>
        new(paramName, $"Could not find {role} column '{name}'");

    public static ArgumentOutOfRangeException Mismatch(string role, string name, string expected, string actual, string paramName = ParamName) =>
        new(paramName, $"Schema mismatch for {role} column '{name}': expected {expected}, got {actual}");
}
