using System.Diagnostics;
using System.Runtime;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Tokenizer;

/// <summary>
/// Tokenizer throughput on <c>data/bench-corpus.txt</c>, line by line, as <c>hf_tok_bench.py</c> measures Hugging Face
/// tokenizers: one thread (<see cref="Qwen3Tokenizer.Encode"/> per line), the batch API
/// (<see cref="Qwen3Tokenizer.EncodeBatch"/>) at 1..N threads, and the plain Microsoft.ML.Tokenizers recipe
/// (<c>BpeTokenizer.EncodeToIds</c>, one thread and <c>Parallel.ForEach</c>) as the baseline.
/// </summary>
/// <remarks>
/// Usage: <c>tokenizer [corpus.txt] [--tokenizer FOLDER] [--threads N] [--reps R] [--no-baseline]</c>.
/// Every mode must give 747,887 tokens (what Hugging Face gives); otherwise the exit code is 1.
/// </remarks>
internal sealed class TokenizerBenchmark : IBenchmark
{
    private const long ExpectedTokens = 747_887;

    public string Name => "tokenizer";

    public string Description => "Qwen3 tokenizer tokens/s on bench-corpus.txt: [corpus] [--tokenizer DIR] [--threads N] [--reps R] [--no-baseline]";

    public int Run(string[] args)
    {
        string corpus = Path.Combine(AppContext.BaseDirectory, "data", "bench-corpus.txt");
        string? folder = null;
        int threads = Environment.ProcessorCount;
        int reps = 3;
        bool baseline = true;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--tokenizer": folder = args[++i]; break;
                case "--threads": threads = int.Parse(args[++i]); break;
                case "--reps": reps = int.Parse(args[++i]); break;
                case "--no-baseline": baseline = false; break;
                default: corpus = args[i]; break;
            }
        }

        folder ??= FindFixtureFolder();
        string[] lines = File.ReadAllText(corpus).Split('\n');
        Console.WriteLine($"corpus {corpus}: {lines.Length:N0} lines; tokenizer {folder}; {Environment.ProcessorCount} cores; " +
                          $"server GC {GCSettings.IsServerGC}; .NET {Environment.Version}");

        var results = new List<Result>();
        var load = Stopwatch.StartNew();
        Qwen3Tokenizer tokenizer = Qwen3Tokenizer.FromFolder(folder);
        Console.WriteLine($"load: {load.Elapsed.TotalSeconds:F2} s");

        // Warm (as hf_tok_bench.py times its second pass): the piece cache holds the corpus's pieces.
        results.Add(Measure("encode, 1 thread, first pass (JIT, cold cache)", 1, 1, () => lines.Sum(l => (long)tokenizer.Encode(l).Length)));
        Console.WriteLine($"distinct pieces cached: {tokenizer.CachedPieceCount:N0}");
        results.Add(Measure("encode, 1 thread", 1, reps, () => lines.Sum(l => (long)tokenizer.Encode(l).Length)));
        foreach (int t in ThreadCounts(threads))
        {
            results.Add(Measure($"EncodeBatch, {t} threads", t, reps, () => tokenizer.EncodeBatch(lines, t).Sum(ids => (long)ids.Length)));
        }

        // Cold: a new tokenizer, so every distinct piece goes through the library's BPE once.
        Qwen3Tokenizer cold1 = Qwen3Tokenizer.FromFolder(folder);
        results.Add(Measure("encode, 1 thread, cold cache", 1, 1, () => lines.Sum(l => (long)cold1.Encode(l).Length)));
        Qwen3Tokenizer coldN = Qwen3Tokenizer.FromFolder(folder);
        results.Add(Measure($"EncodeBatch, {threads} threads, cold cache", threads, 1, () => coldN.EncodeBatch(lines, threads).Sum(ids => (long)ids.Length)));

        if (baseline)
        {
            var bpe = tokenizer.BpeTokenizer;
            results.Add(Measure("Microsoft.ML.Tokenizers recipe, 1 thread", 1, reps, () => lines.Sum(l => (long)bpe.EncodeToIds(l).Count)));
            results.Add(Measure($"Microsoft.ML.Tokenizers recipe, Parallel.ForEach {threads} threads", threads, reps, () =>
            {
                long total = 0;
                Parallel.ForEach(lines, new ParallelOptions { MaxDegreeOfParallelism = threads }, l => Interlocked.Add(ref total, bpe.EncodeToIds(l).Count));
                return total;
            }));

            // One BpeTokenizer per thread: if this scales where the shared one does not, the shared one's lock is why.
            var perThread = new ThreadLocal<Microsoft.ML.Tokenizers.BpeTokenizer>(() => Qwen3Tokenizer.FromFolder(folder).BpeTokenizer);
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => GC.KeepAlive(perThread.Value));
            results.Add(Measure($"Microsoft.ML.Tokenizers recipe, one instance per thread, {threads} threads", threads, reps, () =>
            {
                long total = 0;
                Parallel.ForEach(lines, new ParallelOptions { MaxDegreeOfParallelism = threads },
                    l => Interlocked.Add(ref total, perThread.Value!.EncodeToIds(l).Count));
                return total;
            }));
        }

        bool ok = results.All(r => r.Tokens == ExpectedTokens);
        Console.WriteLine(ok ? $"token count OK ({ExpectedTokens:N0} in every mode)" : $"TOKEN COUNT MISMATCH: expected {ExpectedTokens:N0}");
        Console.WriteLine("TOKENIZER_BENCH " + JsonSerializer.Serialize(new
        {
            lines = lines.Length,
            cores = Environment.ProcessorCount,
            expected_tokens = ExpectedTokens,
            ok,
            results = results.Select(r =>
                new { r.Mode, r.Threads, r.Tokens, tokens_per_s = Math.Round(r.TokensPerSecond), best_s = r.Seconds, r.LockContentions, r.Gen0Collections }),
        }));
        return ok ? 0 : 1;
    }

    private static IEnumerable<int> ThreadCounts(int max)
    {
        for (int t = 1; t < max; t *= 2)
        {
            yield return t;
        }

        yield return max;
    }

    /// <summary>Best of <paramref name="reps"/> timed passes (after a full GC, so passes start alike).</summary>
    private static Result Measure(string mode, int threads, int reps, Func<long> pass)
    {
        double best = double.MaxValue;
        long tokens = 0, contentions = 0, gen0 = 0;
        for (int r = 0; r < reps; r++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long contentionsBefore = Monitor.LockContentionCount;
            int gen0Before = GC.CollectionCount(0);
            var watch = Stopwatch.StartNew();
            tokens = pass();
            best = Math.Min(best, watch.Elapsed.TotalSeconds);
            contentions = Monitor.LockContentionCount - contentionsBefore;
            gen0 = GC.CollectionCount(0) - gen0Before;
        }

        // Lock contentions and gen-0 collections per pass tell whether threads wait on each other or on the GC.
        var result = new Result(mode, threads, tokens, best, tokens / best, contentions, gen0);
        Console.WriteLine($"{mode,-66} {result.TokensPerSecond / 1e6,7:F2} M tokens/s  ({tokens:N0} tokens, {best * 1000,5:F0} ms, " +
                          $"{contentions:N0} lock contentions, {gen0} gen0 GCs)");
        return result;
    }

    /// <summary>The tokenizer fixtures of the repository (the benchmark runs from the repository root on the GPU machine).</summary>
    internal static string FindFixtureFolder()
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (DirectoryInfo? dir = new(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "tests", "Fixtures", "tokenizer");
                if (File.Exists(Path.Combine(candidate, "tokenizer.json")))
                {
                    return candidate;
                }
            }
        }

        throw new DirectoryNotFoundException("No tests/Fixtures/tokenizer/tokenizer.json above the current or app folder; pass --tokenizer FOLDER.");
    }

    private sealed record Result(string Mode, int Threads, long Tokens, double Seconds, double TokensPerSecond, long LockContentions, long Gen0Collections);
}
