using System.Reflection;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// A narrow adapter over ML.NET's model-zip internals, pinned to ML.NET 5.0.1 (Microsoft.ML.Core 1.0.0.0) by
/// tests, so that <c>mlContext.Model.Save/Load</c> carry the whole model inside the zip.
/// </summary>
/// <remarks>
/// <para>Why this route. ML.NET writes a transformer into its zip by calling <see cref="ICanSaveModel.Save"/> with a
/// <see cref="ModelSaveContext"/> whose members are all internal, and reads it back through a loader registered in
/// the <see cref="ComponentCatalog"/> by a <c>LoadableClass</c> attribute, also internal (and its base's constructor is
/// inaccessible too). The one public alternative, <c>CustomMapping</c> with a <c>CustomMappingFactory</c>, stores only
/// a contract name and recreates the factory with a parameterless constructor: the weights would have to live outside
/// the zip (a path in the factory), so the zip would not be self-contained, and scoring would be per row. Friend
/// access (<c>InternalsVisibleTo</c>) is bound to Microsoft's key.</para>
/// <para>So this class reaches exactly these internals by reflection: <c>ModelSaveContext.CheckAtModel</c>,
/// <c>SetVersionInfo</c>, <c>SaveBinaryStream</c>; <c>ModelLoadContext.CheckAtModel(VersionInfo)</c>,
/// <c>TryLoadBinaryStream</c>; the <c>VersionInfo</c> constructor; and, to register the loader, the
/// <c>LoadableClassAttribute</c> and <c>ComponentCatalog.LoadableClassInfo</c> constructors and
/// <c>ComponentCatalog.AddClass</c>/<c>GetLoadableClassInfo</c>. Every one is resolved (all together) before anything is
/// written; if one is missing (a different ML.NET), saving throws <see cref="NotSupportedException"/> naming it,
/// so no zip that cannot be loaded is ever written. Tests pin each member.</para>
/// <para>Loading in a fresh <see cref="MLContext"/> needs the loader registered in that context's catalog first:
/// <c>mlContext.ComponentCatalog.RegisterQwen3Moe()</c> (this library's entry points do it for their context), as
/// ML.NET asks <c>RegisterAssembly</c> for custom mappings. Without it, ML.NET's <c>Model.Load</c> fails with
/// "Couldn't load model" (never a silent wrong result).</para>
/// </remarks>
internal static class MlNetModelSlot
{
    /// <summary>ML.NET model signature of our slot (8 characters at most).</summary>
    public const string ModelSignature = "QWEN3MOE";

    /// <summary>Loader name stored in the slot's header and registered in the catalog.</summary>
    public const string LoaderSignature = "Qwen3MoeTransformer";

    /// <summary>Format versions: 0x00010001 = initial (manifest + Hugging Face files as binary streams).</summary>
    private const uint VerWrittenCur = 0x00010001;
    private const uint VerReadableCur = 0x00010001;
    private const uint VerWeCanReadBack = 0x00010001;

    private const BindingFlags Instance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;

    private static readonly Lazy<Members> s_members = new(Resolve);
    private static readonly object s_registrationGate = new();

    /// <summary>Throws <see cref="NotSupportedException"/> unless every internal member the zip route needs is present.</summary>
    public static void EnsureSupported() => _ = s_members.Value;

    /// <summary>Writes our version header and the named binary streams into the ML.NET slot.</summary>
    public static void Save(ModelSaveContext ctx, IEnumerable<(string Name, Action<Stream> Write)> streams)
    {
        var m = s_members.Value;
        Invoke(m.SaveCheckAtModel, ctx);
        Invoke(m.SetVersionInfo, ctx, VersionInfo(m));
        foreach (var (name, write) in streams)
            Invoke(m.SaveBinaryStream, ctx, name, (Action<BinaryWriter>)(w =>
            {
                w.Flush();
                write(w.BaseStream);
            }));
    }

    /// <summary>Checks the slot's header (signature and version) on a load context (typed object: the type is internal).</summary>
    /// <exception cref="FormatException">Not our slot, or a format version this build cannot read.</exception>
    public static void CheckHeader(object loadContext) => Invoke(s_members.Value.LoadCheckAtModel, loadContext, VersionInfo(s_members.Value));

    /// <summary>Reads a binary stream of the slot; false when it is missing.</summary>
    public static bool TryLoad(object loadContext, string name, Action<Stream> read) =>
        (bool)Invoke(s_members.Value.TryLoadBinaryStream, loadContext, name, (Action<BinaryReader>)(r => read(r.BaseStream)))!;

    /// <summary>
    /// Registers <paramref name="create"/> (<c>static object Create(IHostEnvironment, object)</c>) as the loader of our
    /// slot in <paramref name="catalog"/>, once per catalog.
    /// </summary>
    public static void Register(ComponentCatalog catalog, Type instanceType, MethodInfo create)
    {
        var m = s_members.Value;
        lock (s_registrationGate)
        {
            if (Invoke(m.GetLoadableClassInfo, catalog, LoaderSignature, m.SignatureLoadModel) is not null) return;
            var attribute = m.AttributeCtor.Invoke(new object?[]
                { instanceType, create.DeclaringType, null, m.SignatureLoadModel, "Qwen3-MoE Transformer", new[] { LoaderSignature } });
            // UnwrappedMethod: the loader's own exception (naming the damaged entry) reaches the caller, not TargetInvocationException
            var info = m.ClassInfoCtor.Invoke(new object?[] { attribute, null, null, new UnwrappedMethod(create), true });
            Invoke(m.AddClass, catalog, info, new[] { LoaderSignature }, false);
        }
    }

    private static object VersionInfo(Members m) => m.VersionInfoCtor.Invoke(new object?[]
    {
        ModelSignature, VerWrittenCur, VerReadableCur, VerWeCanReadBack, typeof(MlNetModelSlot).Assembly.FullName, LoaderSignature, null,
    });

    private static object? Invoke(MethodInfo method, object target, params object?[] args)
    {
        try
        {
            return method.Invoke(target, args);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }

    private sealed record Members(
        MethodInfo SaveCheckAtModel, MethodInfo SetVersionInfo, MethodInfo SaveBinaryStream, ConstructorInfo VersionInfoCtor,
        MethodInfo LoadCheckAtModel, MethodInfo TryLoadBinaryStream, Type SignatureLoadModel, ConstructorInfo AttributeCtor,
        ConstructorInfo ClassInfoCtor, MethodInfo AddClass, MethodInfo GetLoadableClassInfo);

    private static Members Resolve()
    {
        var core = typeof(ModelSaveContext).Assembly;
        var missing = new List<string>();
        T? Need<T>(T? member, string description) where T : class
        {
            if (member is null) missing.Add(description);
            return member;
        }
        Type? TypeOf(string name) => Need(core.GetType(name), name);

        var versionInfo = TypeOf("Microsoft.ML.VersionInfo");
        var loadContext = TypeOf("Microsoft.ML.ModelLoadContext");
        var signature = TypeOf("Microsoft.ML.SignatureLoadModel");
        var attributeType = TypeOf("Microsoft.ML.LoadableClassAttribute");
        var attributeBase = TypeOf("Microsoft.ML.LoadableClassAttributeBase");
        var classInfo = TypeOf("Microsoft.ML.Runtime.ComponentCatalog+LoadableClassInfo");
        var save = typeof(ModelSaveContext);
        var catalog = typeof(ComponentCatalog);
        if (missing.Count == 0)
        {
            var members = new Members(
                Need(save.GetMethod("CheckAtModel", Instance, Type.EmptyTypes), "ModelSaveContext.CheckAtModel()")!,
                Need(save.GetMethod("SetVersionInfo", Instance, new[] { versionInfo! }), "ModelSaveContext.SetVersionInfo(VersionInfo)")!,
                Need(save.GetMethod("SaveBinaryStream", Instance, new[] { typeof(string), typeof(Action<BinaryWriter>) }),
                    "ModelSaveContext.SaveBinaryStream(string, Action<BinaryWriter>)")!,
                Need(versionInfo!.GetConstructor(Instance,
                    new[] { typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string) }),
                    "VersionInfo(string, uint, uint, uint, string, string, string)")!,
                Need(loadContext!.GetMethod("CheckAtModel", Instance, new[] { versionInfo }), "ModelLoadContext.CheckAtModel(VersionInfo)")!,
                Need(loadContext.GetMethod("TryLoadBinaryStream", Instance, new[] { typeof(string), typeof(Action<BinaryReader>) }),
                    "ModelLoadContext.TryLoadBinaryStream(string, Action<BinaryReader>)")!,
                signature!,
                Need(attributeType!.GetConstructor(Instance,
                    new[] { typeof(Type), typeof(Type), typeof(Type), typeof(Type), typeof(string), typeof(string[]) }),
                    "LoadableClassAttribute(Type, Type, Type, Type, string, string[])")!,
                Need(classInfo!.GetConstructor(Instance,
                    new[] { attributeBase!, typeof(MethodInfo), typeof(ConstructorInfo), typeof(MethodInfo), typeof(bool) }),
                    "ComponentCatalog.LoadableClassInfo(LoadableClassAttributeBase, MethodInfo, ConstructorInfo, MethodInfo, bool)")!,
                Need(catalog.GetMethod("AddClass", Instance, new[] { classInfo, typeof(string[]), typeof(bool) }),
                    "ComponentCatalog.AddClass(LoadableClassInfo, string[], bool)")!,
                Need(catalog.GetMethod("GetLoadableClassInfo", Instance, new[] { typeof(string), typeof(Type) }),
                    "ComponentCatalog.GetLoadableClassInfo(string, Type)")!);
            if (missing.Count == 0) return members;
        }
        throw new NotSupportedException(
            $"Saving or loading a Qwen3-MoE model inside an ML.NET zip needs ML.NET 5.0.1's model-file internals, and {core.GetName().Name} " +
                $"{core.GetName().Version} " +
            $"({core.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion}) lacks: {string.Join("; ", missing)}. " +
            "Use Qwen3MoeTransformer.ExportHuggingFace instead, or the ML.NET version this library was built for.");
    }
}
