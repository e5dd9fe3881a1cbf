namespace Microsoft.ML.Qwen3Moe;

/// <summary>Hangs the Qwen3-MoE catalog off an <see cref="MLContext"/>.</summary>
public static class Qwen3MoeMLContextExtensions
{
    /// <summary>
    /// The Qwen3-MoE catalog of <paramref name="mlContext"/> (fine-tuning and scoring). Also registers the model loader
    /// in the context's component catalog, so zips saved with a Qwen3-MoE transformer load in this context.
    /// </summary>
    public static Qwen3MoeCatalog Qwen3Moe(this MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        return new Qwen3MoeCatalog(mlContext);
    }
}
