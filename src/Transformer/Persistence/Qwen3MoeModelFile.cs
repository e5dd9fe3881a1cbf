using System.Reflection;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// Our slot in an ML.NET model zip: a manifest stream, then the files of a Hugging Face folder (config, safetensors,
/// tokenizer files) as binary streams, written and read through <see cref="MlNetModelSlot"/>. A LoRA model stores its
/// PEFT adapter files, the tokenizer files and <c>base_model.json</c> (path and fingerprint of the base folder) instead.
/// </summary>
/// <remarks>
/// Binary format (version 0x00010001), streams in the slot's directory, in order: <c>Qwen3Moe.manifest.json</c>
/// (<see cref="ModelManifest"/>), then each file it names (e.g. <c>config.json</c>, <c>model.safetensors</c>,
/// <c>tokenizer.json</c>, <c>tokenizer_config.json</c>). Weights are stored in the model's dtype.
/// </remarks>
internal static class Qwen3MoeModelFile
{
    /// <summary>Writes <paramref name="transformer"/> into the slot ML.NET is saving.</summary>
    public static void Save(Qwen3MoeTransformer transformer, ModelSaveContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        MlNetModelSlot.EnsureSupported(); // before anything is written: never a zip that cannot load
        var temp = Directory.CreateTempSubdirectory("qwen3moe-save-");
        try
        {
            var folder = Path.Combine(temp.FullName, "model");
            if (transformer.HasAdapters) WriteLoraFolder(transformer, folder);
            else transformer.ExportHuggingFace(folder);
            var files = Directory.GetFiles(folder).Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal).ToArray();
            var manifest = new ModelManifest(ModelManifest.CurrentVersion, files, transformer.ScoringOptions);
            var streams = new List<(string, Action<Stream>)> { (ModelManifest.StreamName, manifest.WriteTo) };
            foreach (var f in files)
                streams.Add((f, s =>
                {
                    using var input = File.OpenRead(Path.Combine(folder, f));
                    input.CopyTo(s);
                }));
            MlNetModelSlot.Save(ctx, streams);
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }

    /// <summary>
    /// A LoRA model's files: the PEFT adapter, the tokenizer files and <see cref="BaseModelReference.FileName"/> (the base
    /// folder and its fingerprint), never the base weights.
    /// </summary>
    private static void WriteLoraFolder(Qwen3MoeTransformer transformer, string folder)
    {
        transformer.ExportAdapter(folder);
        foreach (var (name, bytes) in transformer.TokenizerFiles?.Files ?? new Dictionary<string, byte[]>()) File.WriteAllBytes(Path.Combine(folder, name), bytes);
        using var s = File.Create(Path.Combine(folder, BaseModelReference.FileName));
        transformer.BaseModel!.WriteTo(s);
    }

    /// <summary>The loader ML.NET calls (registered by <see cref="MlNetModelSlot.Register"/>): <c>ctx</c> is ML.NET's internal ModelLoadContext.</summary>
    /// <exception cref="FormatException">A stream is missing or malformed.</exception>
    private static object Create(IHostEnvironment env, object ctx)
    {
        MlNetModelSlot.CheckHeader(ctx);
        ModelManifest? manifest = null;
        if (!MlNetModelSlot.TryLoad(ctx, ModelManifest.StreamName, s => manifest = ModelManifest.ReadFrom(s)))
            throw new FormatException($"Corrupt Qwen3-MoE model slot: no '{ModelManifest.StreamName}' stream.");
        var temp = Directory.CreateTempSubdirectory("qwen3moe-load-");
        try
        {
            foreach (var f in manifest!.Files)
            {
                if (!MlNetModelSlot.TryLoad(ctx, f, s =>
                    {
                        using var output = File.Create(Path.Combine(temp.FullName, f));
                        s.CopyTo(output);
                    }))
                    throw new FormatException($"Corrupt Qwen3-MoE model slot: the manifest names '{f}' but the zip has no such stream.");
            }
            if (!manifest.Files.Contains(BaseModelReference.FileName)) return Qwen3MoeTransformer.FromHuggingFace(env, temp.FullName, manifest.Scoring);
            // a LoRA model: the adapters are in the zip, the base is the folder it refers to (checked first)
            BaseModelReference reference;
            using (var s = File.OpenRead(Path.Combine(temp.FullName, BaseModelReference.FileName))) reference = BaseModelReference.ReadFrom(s);
            reference.Verify();
            bool ownTokenizer = TokenizerSource.Exists(temp.FullName);
            return Qwen3MoeTransformer.FromHuggingFace(env, reference.Path, manifest.Scoring, ownTokenizer ? temp.FullName : null, temp.FullName, reference);
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }

    /// <summary>Registers the loader in <paramref name="catalog"/> (idempotent).</summary>
    /// <exception cref="NotSupportedException">This ML.NET version lacks a member the route needs.</exception>
    public static void Register(ComponentCatalog catalog) =>
        MlNetModelSlot.Register(catalog, typeof(Qwen3MoeTransformer), typeof(Qwen3MoeModelFile).GetMethod(nameof(Create), BindingFlags.NonPublic | BindingFlags.Static)!);

    /// <summary>Registers the loader in the environment's catalog; on an unsupported ML.NET, warns instead (saving will then throw).</summary>
    public static void TryRegister(IHostEnvironment env)
    {
        try
        {
            Register(env.ComponentCatalog);
        }
        catch (NotSupportedException e)
        {
            Qwen3MoeTransformer.Warn(env, e.Message);
        }
    }
}
