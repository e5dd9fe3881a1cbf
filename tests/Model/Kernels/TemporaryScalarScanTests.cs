using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Kernels;

/// <summary>
/// Keeps TorchSharp's temporary-Scalar hazard (see <c>OwnedScalar</c>) out of src/: every conversion of a number to a
/// <c>TorchSharp.Scalar</c>, and every boxed double/float/long handed to TorchScript, must be on this allow-list with the
/// reason it is safe; anything new fails here with its file, line and expression.
/// </summary>
[TestFixture]
public class TemporaryScalarScanTests
{
    /// <summary>Allowed hazards: key (file | Type.member | expression) and why each is safe.</summary>
    private static readonly Dictionary<string, string> Allowed = new()
    {
    };

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Microsoft.ML.Qwen3Moe.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("Microsoft.ML.Qwen3Moe.sln not found above " + TestContext.CurrentContext.TestDirectory);
    }

    [Test]
    public void SrcCreatesNoTemporaryScalars()
    {
        var sources = ScalarConversionScanner.SourceFiles(RepoRoot(), "src").ToList();
        // src/Common files are compiled into two assemblies; the tokenizer assembly's copy is built with its own symbol
        sources.AddRange(sources.Where(f => f.Path.StartsWith("src/Common/", StringComparison.Ordinal))
            .Select(f => (f.Path + "#tokenization", "#define QWEN3MOE_TOKENIZATION\n" + f.Text)).ToList());
        var (findings, errors) = ScalarConversionScanner.Scan(sources);
        Assert.That(errors, Is.Empty, "src/ must compile in the scan, or the semantic model cannot be trusted");
        var unexpected = findings.Where(f => !Allowed.ContainsKey(f.Key)).ToList();
        Assert.That(unexpected, Is.Empty, "temporary Scalars (use OwnedScalar, a tensor or a script constant):\n" + string.Join("\n", unexpected));
        var stale = Allowed.Keys.Except(findings.Select(f => f.Key)).ToList();
        Assert.That(stale, Is.Empty, "allow-list entries that no longer match any code (remove them):\n" + string.Join("\n", stale));
    }

    /// <summary>The scanner sees each kind of hazard (so an empty result above means something).</summary>
    [Test]
    public void ScannerFindsEachKindOfHazard()
    {
        const string code = """
            using TorchSharp;
            using static TorchSharp.torch;
            class Probe
            {
                static jit.CompilationUnit Unit = null!;
                Tensor Add(Tensor x) => x.add(1.5);
                Tensor Mul(Tensor x, float f) => x * f;
                Tensor Clamp(Tensor x) => x.clamp_min(1e-6);
                Tensor Cast(Tensor x, double d) => x.sub((Scalar)d);
                Tensor Invoke(Tensor x, double eps) => Unit.invoke<Tensor>("f", x, eps);
                Tensor Owned(Tensor x, Scalar s) => x.mul(s);
                Tensor ViaInt(Tensor x) => Unit.invoke<Tensor>("g", x, 3, true);
                Tensor Sum(Tensor x, Tensor y) => x + y;
                Tensor AddMethod(Tensor x, Tensor y) => x.add(y);
                Tensor AddOwned(Tensor x, Tensor y, Scalar one) => x.add(y, one);
                Tensor Pow(Tensor x, double theta) => pow(theta, x);
            }
            """;
        var (findings, errors) = ScalarConversionScanner.Scan(new[] { ("Probe.cs", code) });
        Assert.That(errors, Is.Empty);
        Assert.That(findings.Select(f => f.Member).Distinct(), Is.EquivalentTo(new[] { "Probe.Add", "Probe.Mul", "Probe.Clamp", "Probe.Cast", "Probe.Invoke",
            "Probe.Sum", "Probe.AddMethod", "Probe.Pow" }),
            string.Join("\n", findings));
    }
}
