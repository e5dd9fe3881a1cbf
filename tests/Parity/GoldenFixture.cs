using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Safetensors;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Parity;

/// <summary>
/// A reference folder produced by Hugging Face transformers (<c>model/</c>, <c>expected.safetensors</c>,
/// <c>expected.json</c>): the copies in tests/Fixtures/golden plus every folder named in QWEN3MOE_EXTRA_FIXTURES (':'-separated).
/// </summary>
public sealed class GoldenFixture
{
    /// <summary>Environment variable listing extra fixture folders.</summary>
    public const string ExtraFixturesVariable = "QWEN3MOE_EXTRA_FIXTURES";

    private GoldenFixture(string folder)
    {
        Folder = folder;
        Name = Path.GetFileName(Path.TrimEndingDirectorySeparator(folder));
    }

    public string Name { get; }

    public string Folder { get; }

    public string ModelFolder => Path.Combine(Folder, "model");

    public JsonElement Json => JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "expected.json"))).RootElement;

    /// <summary>Reads one reference tensor (CPU, stored dtype).</summary>
    public Tensor Expected(string key)
    {
        using var f = SafetensorsFile.Open(Path.Combine(Folder, "expected.safetensors"));
        return f.ReadTensor(key);
    }

    /// <summary>Names of the reference tensors.</summary>
    public IReadOnlyCollection<string> ExpectedKeys()
    {
        using var f = SafetensorsFile.Open(Path.Combine(Folder, "expected.safetensors"));
        return f.Entries.Keys.ToList();
    }

    public override string ToString() => Name;

    public static string BuiltInRoot => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "golden");

    public static GoldenFixture Tiny => new(Path.Combine(BuiltInRoot, "tiny"));

    public static GoldenFixture Mixed => new(Path.Combine(BuiltInRoot, "mixed"));

    /// <summary>Larger activations (initializer_range 0.5), where small numeric slips (RMSNorm eps, RoPE theta) show.</summary>
    public static GoldenFixture Wide => new(Path.Combine(BuiltInRoot, "wide"));

    /// <summary>The built-in fixtures then the extra ones; each becomes a test case named after its folder.</summary>
    public static IEnumerable<TestCaseData> Cases()
    {
        var root = Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden");
        var folders = new List<string> { Path.Combine(root, "tiny"), Path.Combine(root, "mixed"), Path.Combine(root, "wide") };
        var extra = Environment.GetEnvironmentVariable(ExtraFixturesVariable);
        if (!string.IsNullOrWhiteSpace(extra)) folders.AddRange(extra.Split(':', StringSplitOptions.RemoveEmptyEntries));
        return folders.Select(f => new GoldenFixture(f)).Select(f => new TestCaseData(f).SetArgDisplayNames(f.Name));
    }
}
