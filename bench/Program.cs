
namespace Microsoft.ML.Qwen3Moe.Benchmarks;

/// <summary>Entry point: <c>Microsoft.ML.Qwen3Moe.Benchmarks &lt;workload&gt; [args]</c>.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var all = typeof(Program).Assembly.GetTypes()
            .Where(t => typeof(IBenchmark).IsAssignableFrom(t) && !t.IsInterface && !t.IsAbstract)
            .Select(t => (IBenchmark)Activator.CreateInstance(t)!)
            .OrderBy(b => b.Name, StringComparer.Ordinal)
            .ToList();
        var chosen = args.Length == 0 ? null : all.FirstOrDefault(b => string.Equals(b.Name, args[0], StringComparison.OrdinalIgnoreCase));
        if (chosen is null)
        {
            Console.Error.WriteLine("usage: Microsoft.ML.Qwen3Moe.Benchmarks <workload> [args]");
            foreach (var b in all) Console.Error.WriteLine($"  {b.Name,-12} {b.Description}");
            return 2;
        }
        return chosen.Run(args.Skip(1).ToArray());
    }
}
