using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Kernels;

/// <summary>
/// Compiles C# sources against the assemblies this test process runs with (the trusted platform assemblies: the .NET
/// runtime, TorchSharp, ML.NET) and lists every place that would make TorchSharp create a temporary <c>Scalar</c>:
/// an implicit or explicit conversion of a number to <c>TorchSharp.Scalar</c> (or to a temporary <c>Tensor</c>) (an op argument, an operator operand such
/// as <c>tensor * 0.5</c>), and a boxed <c>double</c>/<c>float</c>/<c>long</c> handed to a TorchScript
/// <c>invoke</c>/<c>call</c> (TorchSharp converts it with <c>((Scalar)d).Handle</c>). See <c>OwnedScalar</c> for why.
/// </summary>
public static class ScalarConversionScanner
{
    /// <summary>One hazard: file (relative to the scanned root), enclosing member, the expression, its line.</summary>
    public sealed record Finding(string File, string Member, string Expression, int Line, string Kind)
    {
        /// <summary>Stable key for allow-lists (no line numbers).</summary>
        public string Key => $"{File} | {Member} | {Expression}";

        public override string ToString() => $"{File}:{Line} {Kind} in {Member}: {Expression}";
    }

    // The SDK's implicit usings (ImplicitUsings=enable in Directory.Build.props).
    private const string ImplicitUsings =
        "global using System; global using System.Collections.Generic; global using System.IO; global using System.Linq; " +
        "global using System.Net.Http; global using System.Threading; global using System.Threading.Tasks;";

    /// <summary>Compiles <paramref name="sources"/> (relative path, text) as one library and returns the hazards and the compiler errors.</summary>
    public static (IReadOnlyList<Finding> Findings, IReadOnlyList<string> Errors) Scan(IEnumerable<(string Path, string Text)> sources)
    {
        var options = new CSharpParseOptions(LanguageVersion.Preview);
        var trees = sources.Select(s => CSharpSyntaxTree.ParseText(s.Text, options, s.Path))
            .Append(CSharpSyntaxTree.ParseText(ImplicitUsings, options, "ImplicitUsings.g.cs")).ToList();
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!)
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Where(p => !Path.GetFileName(p).StartsWith("Microsoft.ML.Qwen3Moe", StringComparison.Ordinal))
            .Select(p => MetadataReference.CreateFromFile(p));
        var compilation = CSharpCompilation.Create("ScalarScan", trees, references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable, allowUnsafe: true));
        // CS8795: [GeneratedRegex] partial methods, whose other half a source generator writes (not run here).
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error && d.Id != "CS8795").Select(d => d.ToString()).ToList();
        var scalar = compilation.GetTypeByMetadataName("TorchSharp.Scalar")
            ?? throw new InvalidOperationException("TorchSharp.Scalar is not among the references");
        var tensor = compilation.GetTypeByMetadataName("TorchSharp.torch+Tensor");
        var findings = new List<Finding>();
        foreach (var tree in trees)
        {
            var model = compilation.GetSemanticModel(tree);
            foreach (var node in tree.GetRoot().DescendantNodes())
            {
                if (node is CastExpressionSyntax cast && SymbolEqualityComparer.Default.Equals(model.GetTypeInfo(cast.Type).Type, scalar)
                    && !SymbolEqualityComparer.Default.Equals(model.GetTypeInfo(cast.Expression).Type, scalar))
                    findings.Add(Make(tree, cast, "explicit conversion to Scalar"));
                else if (node is ExpressionSyntax e && node is not CastExpressionSyntax)
                {
                    var info = model.GetTypeInfo(e);
                    if (info.Type is not null && SymbolEqualityComparer.Default.Equals(info.ConvertedType, scalar)
                        && !SymbolEqualityComparer.Default.Equals(info.Type, scalar) && info.Type.SpecialType != SpecialType.System_Object)
                        findings.Add(Make(tree, e, $"implicit conversion {info.Type.ToDisplayString()} -> Scalar"));
                    else if (info.Type is not null && IsNumber(info.Type) && SymbolEqualityComparer.Default.Equals(info.ConvertedType, tensor))
                        findings.Add(Make(tree, e, $"implicit conversion {info.Type.ToDisplayString()} -> temporary Tensor"));
                }
                if (node is BinaryExpressionSyntax or AssignmentExpressionSyntax or PrefixUnaryExpressionSyntax or InvocationExpressionSyntax
                    && model.GetSymbolInfo(node).Symbol is IMethodSymbol m && m.ContainingNamespace?.ToDisplayString() == "TorchSharp")
                {
                    if (m.MethodKind == MethodKind.UserDefinedOperator && m.Parameters.Any(p => IsNumber(p.Type)))
                        findings.Add(Make(tree, node, $"TorchSharp operator {m.ToDisplayString()} converts the number to a temporary Scalar"));
                    else if ((m.MethodKind == MethodKind.UserDefinedOperator && m.Name == "op_Addition")
                             || (m.Name is "add" or "add_" && m.Parameters.Length == 1 && m.ContainingType.Name == "Tensor"))
                        findings.Add(Make(tree, node, $"{m.ToDisplayString()} passes a temporary alpha = 1 (use Scalars.Plus or add(x, Scalars.One))"));
                }
                if (node is InvocationExpressionSyntax call && IsScriptInvoke(model.GetSymbolInfo(call).Symbol as IMethodSymbol))
                    foreach (var arg in call.ArgumentList.DescendantNodes().OfType<ExpressionSyntax>())
                    {
                        var info = model.GetTypeInfo(arg);
                        if (info.Type?.SpecialType is SpecialType.System_Double or SpecialType.System_Single or SpecialType.System_Int64
                            && info.ConvertedType?.SpecialType == SpecialType.System_Object)
                            findings.Add(Make(tree, arg, $"boxed {info.Type.ToDisplayString()} passed to TorchScript (converted to a temporary Scalar)"));
                    }
            }
        }
        return (findings, errors);
    }

    /// <summary>The .cs files of <paramref name="folders"/> under <paramref name="root"/> (bin/ and obj/ left out), as (path relative to root, text).</summary>
    public static IEnumerable<(string Path, string Text)> SourceFiles(string root, params string[] folders) =>
        folders.SelectMany(f => Directory.EnumerateFiles(Path.Combine(root, f), "*.cs", SearchOption.AllDirectories))
            .Select(p => Path.GetRelativePath(root, p).Replace('\\', '/'))
            .Where(p => !p.Split('/').Any(part => part is "bin" or "obj"))
            .OrderBy(p => p, StringComparer.Ordinal)
            .Select(p => (p, File.ReadAllText(Path.Combine(root, p))));

    private static bool IsNumber(ITypeSymbol t) => t.SpecialType is SpecialType.System_Double or SpecialType.System_Single
        or SpecialType.System_Int64 or SpecialType.System_Int32 or SpecialType.System_Int16 or SpecialType.System_Byte or SpecialType.System_SByte
        || t.ToDisplayString() == "System.Half";

    private static bool IsScriptInvoke(IMethodSymbol? method) =>
        method is { Name: "invoke" or "call" or "forward" } && method.ContainingType.ToDisplayString().StartsWith("TorchSharp.torch.jit.",
            StringComparison.Ordinal);

    private static Finding Make(SyntaxTree tree, SyntaxNode node, string kind)
    {
        var member = node.Ancestors().OfType<MemberDeclarationSyntax>().FirstOrDefault();
        var type = node.Ancestors().OfType<BaseTypeDeclarationSyntax>().FirstOrDefault()?.Identifier.Text ?? "?";
        var name = member switch
        {
            MethodDeclarationSyntax m => m.Identifier.Text,
            ConstructorDeclarationSyntax => ".ctor",
            PropertyDeclarationSyntax p => p.Identifier.Text,
            FieldDeclarationSyntax f => f.Declaration.Variables.First().Identifier.Text,
            OperatorDeclarationSyntax o => "operator " + o.OperatorToken.Text,
            _ => member?.Kind().ToString() ?? "?",
        };
        return new Finding(tree.FilePath, $"{type}.{name}", node.ToString(), tree.GetLineSpan(node.Span).StartLinePosition.Line + 1, kind);
    }
}
