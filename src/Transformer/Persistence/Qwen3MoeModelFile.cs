using System.Reflection;
using Microsoft.ML.Qwen3Moe.Storage;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// Our slot in an ML.NET model zip: a manifest stream, then the files of a Hugging Face folder (config, safetensors,
/// tokenizer files) as binary streams, written and read through <see cref="MlNetModelSlot"/>.
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
        // pid-stamped, and the folders of killed saves are removed first (the zip itself is made atomic by ModelZipWriter)
        var temp = ScratchFolder.Create("qwen3moe-save");
        try
        {
            var folder = Path.Combine(temp.Path, "model");
            if (transformer.HasAdapters) WriteLoraFolder(transformer, folder);
            else transformer.ExportHuggingFace(folder);
            var files = Directory.GetFiles(folder).Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal).ToArray();
            var manifest = ModelManifest.Describe(folder, files, transformer.ScoringOptions);
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
            temp.Dispose();
        }
    }

    /// <summary>The loader ML.NET calls (registered by <see cref="MlNetModelSlot.Register"/>): <c>ctx</c> is ML.NET's internal ModelLoadContext.</summary>
    /// <exception cref="FormatException">A stream is missing or malformed.</exception>
    /// <summary>Prefix of the temporary folders a model zip is extracted into while it loads (<see cref="ScratchFolder"/>).</summary>
    internal const string LoadFolderPrefix = "qwen3moe-load";

    private static object Create(IHostEnvironment env, object ctx)
    {
        MlNetModelSlot.CheckHeader(ctx);
        ModelManifest? manifest = null;
        if (!MlNetModelSlot.TryLoad(ctx, ModelManifest.StreamName, s => manifest = ModelManifest.ReadFrom(s)))
            throw new FormatException($"Corrupt Qwen3-MoE model slot: no '{ModelManifest.StreamName}' stream.");
        using var temp = ScratchFolder.Create(LoadFolderPrefix); // removed when the load ends; stale ones of killed loads first
        foreach (var entry in manifest!.Files) Extract(ctx, entry, temp.Path);
        if (!manifest.Files.Any(e => e.Name == BaseModelReference.FileName)) return Qwen3MoeTransformer.FromHuggingFace(env, temp.Path, manifest.Scoring);
        // a LoRA model: the adapters are in the zip, the base is the folder it refers to (checked first)
        BaseModelReference reference;
        using (var s = File.OpenRead(Path.Combine(temp.Path, BaseModelReference.FileName))) reference = BaseModelReference.ReadFrom(s);
        reference.Verify();
        bool ownTokenizer = TokenizerSource.Exists(temp.Path);
        return Qwen3MoeTransformer.FromHuggingFace(env, reference.Path, manifest.Scoring, ownTokenizer ? temp.Path : null, temp.Path, reference);
    }

    /// <summary>
    /// Extracts one file of the slot, streaming with the manifest's size as a cap (an entry holding more is refused
    /// before the rest is written) and checking its size and SHA-256 against the manifest.
    /// </summary>
    /// <exception cref="FormatException">The stream is missing, larger or smaller than the manifest says, or its content differs; the message names the
    /// entry.</exception>
    /// <summary>A LoRA model's files: the PEFT adapter, the tokenizer files and the base reference (path and fingerprint), never the base weights.</summary>
    private static void WriteLoraFolder(Qwen3MoeTransformer transformer, string folder)
    {
        transformer.ExportAdapter(folder);
        foreach (var (name, bytes) in transformer.TokenizerFiles?.Files ?? new Dictionary<string, byte[]>())
            File.WriteAllBytes(Path.Combine(folder, name), bytes);
        using var s = File.Create(Path.Combine(folder, BaseModelReference.FileName));
        transformer.BaseModel!.WriteTo(s);
    }

    private static void Extract(object ctx, ModelManifest.Entry entry, string folder)
    {
        long bytes = 0;
        string sha256 = "";
        bool found;
        try
        {
            found = MlNetModelSlot.TryLoad(ctx, entry.Name, s =>
            {
                using var output = File.Create(Path.Combine(folder, entry.Name));
                bytes = CappedStream.Copy(s, output, entry.Bytes, entry.Name, out sha256);
            });
        }
        catch (InvalidDataException e)
        {
            throw new FormatException($"Corrupt Qwen3-MoE model slot: {e.Message}", e);
        }
        catch (InvalidOperationException e) when (e.InnerException is InvalidDataException inner)
        {
            throw new FormatException($"Corrupt Qwen3-MoE model slot: {inner.Message}", inner);
        }
        if (!found) throw new FormatException($"Corrupt Qwen3-MoE model slot: the manifest names '{entry.Name}' but the zip has no such stream.");
        if (bytes != entry.Bytes)
            throw new FormatException($"Corrupt Qwen3-MoE model slot: '{entry.Name}' holds {bytes:N0} bytes, the manifest says {entry.Bytes:N0}.");
        if (sha256 != entry.Sha256)
            throw new FormatException($"Corrupt Qwen3-MoE model slot: '{entry.Name}' does not match its SHA-256 in the manifest (the zip was damaged or " +
                $"altered).");
    }

    /// <summary>Registers the loader in <paramref name="catalog"/> (idempotent).</summary>
    /// <exception cref="NotSupportedException">This ML.NET version lacks a member the route needs.</exception>
    public static void Register(ComponentCatalog catalog) =>
        MlNetModelSlot.Register(catalog, typeof(Qwen3MoeTransformer),
            typeof(Qwen3MoeModelFile).GetMethod(nameof(Create), BindingFlags.NonPublic | BindingFlags.Static)!);

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
