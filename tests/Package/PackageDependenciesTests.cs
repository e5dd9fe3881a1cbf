using System.Xml.Linq;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Package;

/// <summary>
/// The Microsoft.ML.Qwen3Moe package bundles the library assemblies and lists what they reference as its dependencies:
/// a library project's new package reference that the package project does not list would load in this repository and
/// fail with FileNotFoundException in every consumer (CI's consumer check shows it too, but only after a pack).
/// </summary>
[TestFixture]
public class PackageDependenciesTests
{
    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Microsoft.ML.Qwen3Moe.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("Microsoft.ML.Qwen3Moe.sln not found above " + TestContext.CurrentContext.TestDirectory);
    }

    private static HashSet<string> PackageReferences(string project) =>
        XDocument.Load(project).Descendants("PackageReference").Select(e => (string)e.Attribute("Include")!).ToHashSet(StringComparer.OrdinalIgnoreCase);

    [Test]
    public void EveryPackageALibraryReferencesIsADependencyOfThePackage()
    {
        var src = Path.Combine(RepoRoot(), "src");
        var listed = PackageReferences(Path.Combine(src, "Package", "Microsoft.ML.Qwen3Moe.Package.csproj"));
        var libraries = Directory.EnumerateFiles(src, "*.csproj", SearchOption.AllDirectories)
            .Where(p => !p.Contains(Path.Combine("src", "Package"), StringComparison.Ordinal)).ToList();
        Assert.That(libraries, Is.Not.Empty);
        foreach (var library in libraries)
            Assert.That(PackageReferences(library).Except(listed), Is.Empty,
                $"{Path.GetFileName(library)} references packages that src/Package/Microsoft.ML.Qwen3Moe.Package.csproj does not list");
    }
}
