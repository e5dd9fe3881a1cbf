using Microsoft.ML.Qwen3Moe.Storage;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// Saves an ML.NET model zip atomically: through ML.NET's <c>Model.Save(model, schema, Stream)</c> into a hidden temp
/// file beside the target, fsynced, renamed over the target, and the folder fsynced (<see cref="AtomicFile"/>).
/// </summary>
/// <remarks>
/// Why not ML.NET's <c>Model.Save(model, schema, string filePath)</c>: ML.NET 5.0.1 implements it as
/// <c>using (var stream = File.Create(filePath)) Save(model, inputSchema, stream);</c>, so the existing file is
/// truncated before any transformer's save code runs. Nothing a transformer does inside its own save can bring the old
/// content back, or keep a partial zip from being left after a kill or a full disk: the path overload cannot be made
/// atomic from our side (<c>ModelOperationsCatalog</c> is sealed and <c>MLContext.Model</c> is not virtual). A test pins
/// that behaviour of ML.NET, so a change there is noticed.
/// </remarks>
internal static class ModelZipWriter
{
    /// <summary>Writes <paramref name="model"/> (any ML.NET transformer or chain) and <paramref name="inputSchema"/> to <paramref name="filePath"/>
    /// atomically.</summary>
    /// <param name="mlContext">The context whose <c>Model.Save</c> writes the zip.</param>
    /// <param name="model">The model to save.</param>
    /// <param name="inputSchema">The model's input schema (may be null, as for ML.NET).</param>
    /// <param name="filePath">The zip to create or replace.</param>
    /// <param name="wrap">Test seam: wraps the temp file's stream (e.g. to simulate a full disk).</param>
    public static void Save(MLContext mlContext, ITransformer model, DataViewSchema? inputSchema, string filePath, Func<Stream, Stream>? wrap = null)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        if (Directory.Exists(filePath)) throw new IOException($"'{Path.GetFullPath(filePath)}' is a folder, not a model file.");
        AtomicFile.Write(filePath, stream =>
        {
            var target = wrap is null ? stream : wrap(stream);
            mlContext.Model.Save(model, inputSchema, target);
            target.Flush();
        });
    }
}
