namespace Microsoft.ML.Qwen3Moe;
internal static class Placeholder { }
