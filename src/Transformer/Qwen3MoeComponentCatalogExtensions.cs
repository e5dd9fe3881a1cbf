using Microsoft.ML.Qwen3Moe.Persistence;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>Registration of the Qwen3-MoE model loader in an ML.NET <see cref="ComponentCatalog"/>.</summary>
public static class Qwen3MoeComponentCatalogExtensions
{
    /// <summary>
    /// Lets <c>mlContext.Model.Load</c> read zips that contain a <see cref="Qwen3MoeTransformer"/>. Call it once on a
    /// new <see cref="MLContext"/> before loading (<c>mlContext.ComponentCatalog.RegisterQwen3Moe()</c>), as ML.NET asks
    /// <c>RegisterAssembly</c> for custom mappings; a context that built or fitted a Qwen3-MoE model is already registered.
    /// <c>mlContext.Qwen3Moe().LoadModel(path, out schema)</c> registers and loads in one call. Without registration,
    /// ML.NET's <c>Model.Load</c> fails with its own message ("Couldn't load model: 'TransformerChain'", or "Error during
    /// class instantiation"), raised before any code of this library runs, so it cannot name this fix.
    /// </summary>
    /// <exception cref="NotSupportedException">The ML.NET in use is not the version this library supports.</exception>
    public static void RegisterQwen3Moe(this ComponentCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        Qwen3MoeModelFile.Register(catalog);
    }
}
