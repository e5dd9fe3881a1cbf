using System.Globalization;
using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Benchmarks.Tokenizer;
using Microsoft.ML.Qwen3Moe.Tokenization;
using Microsoft.ML.Qwen3Moe.Training;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// The padding that sequence packing saves (CPU only, no model): <c>bench-corpus.txt</c> cut into rows of N characters as
/// the estimator probe of issue 17 cuts it, tokenized and truncated to the maximum length as <c>Fit</c> does, then batched
/// unpacked and packed (<see cref="SequencePacker"/>), each batch padded to its longest row, in input order and shuffled
/// as the estimator shuffles epoch 0.
/// </summary>
/// <remarks>
/// Usage: <c>packing-stats [corpus.txt] [--tokenizer DIR] [--chars 9000 | --chars 500-9000] [--rows 400] [--batch 2] [--max-length 2048] [--seed 1]</c>
/// (a range cuts rows of seeded uniform lengths).
/// </remarks>
internal sealed class PackingStatsBenchmark : IBenchmark
{
    public string Name => "packing-stats";

    public string Description => "padding unpacked vs packed, bench-corpus.txt rows: [corpus] [--chars N] [--rows N] [--batch B] [--max-length S]";

    public int Run(string[] args)
    {
        string corpus = Path.Combine(AppContext.BaseDirectory, "data", "bench-corpus.txt");
        string? folder = null;
        int minChars = 9000, maxChars = 9000, maxRows = 400, batch = 2, maxLength = 2048, seed = 1;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--tokenizer": folder = args[++i]; break;
                case "--chars": (minChars, maxChars) = CharRange(args[++i]); break;
                case "--rows": maxRows = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--batch": batch = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--max-length": maxLength = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--seed": seed = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                default: corpus = args[i]; break;
            }
        }
        folder ??= TokenizerBenchmark.FindFixtureFolder();
        var text = File.ReadAllText(corpus);
        var rows = new List<string>();
        var random = new Random(seed);
        for (int i = 0, chars = minChars; i + chars <= text.Length && rows.Count < maxRows; i += chars, chars = random.Next(minChars, maxChars + 1))
            rows.Add(text.Substring(i, chars)); // with one length, as the issue's probe

        var tokenizer = Qwen3Tokenizer.FromFolder(folder);
        var encoded = tokenizer.EncodeBatch(rows);
        int truncated = encoded.Count(e => e.Length > maxLength);
        var lengths = encoded.Select(e => Math.Min(e.Length, maxLength)).Where(n => n >= 2).ToArray(); // LongTextHandling.Truncate; single tokens skipped
        var packs = SequencePacker.Pack(lengths, maxLength);
        var packLengths = packs.Select(p => p.Sum(d => lengths[d])).ToArray();
        long tokens = lengths.Sum(n => (long)n);

        var cut = minChars == maxChars ? $"{minChars:N0}" : $"{minChars:N0} to {maxChars:N0}";
        Console.WriteLine($"corpus {corpus}: {rows.Count} rows of {cut} characters; tokenizer {folder}; MaxSequenceLength {maxLength}, batch {batch}");
        Console.WriteLine($"tokens {tokens:N0} in {lengths.Length} rows ({truncated} truncated to {maxLength}); lengths min {lengths.Min()}, " +
            $"median {lengths.Order().ElementAt(lengths.Length / 2)}, max {lengths.Max()}");
        Console.WriteLine($"{"",-10} {"rows",6} {"batches",8} {"padding (in order)",19} {"padding (shuffled)",19} {"token slots (in order)",23}");
        Report("unpacked", lengths, batch, seed, padTo: 1, maxLength);
        Report("packed", packLengths, batch, seed, padTo: maxLength, maxLength); // the estimator pads packed batches to the maximum length
        return 0;
    }

    /// <summary>"9000" or "1000-9000" (uniform lengths, seeded).</summary>
    private static (int Min, int Max) CharRange(string text)
    {
        var parts = text.Split('-').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        return (parts[0], parts[^1]);
    }

    private static void Report(string name, int[] rowLengths, int batch, int seed, int padTo, int maxLength)
    {
        var paddedLength = new TokenBatcher(0, maxLength, TruncationSide.Right, padTo).PaddedLength;
        double inOrder = SequencePacker.PaddingFraction(rowLengths, batch, paddedLength);
        var order = DataOrder.Permutation(rowLengths.Length, seed, 0);
        double shuffled = SequencePacker.PaddingFraction(order.Select(i => rowLengths[i]), batch, paddedLength);
        long slots = (long)Math.Round(rowLengths.Sum(n => (long)n) / (1 - inOrder));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-10} {rowLengths.Length,6} {(rowLengths.Length + batch - 1) / batch,8} {100 * inOrder,18:F1}% {100 * shuffled,18:F1}% {slots,23:N0}"));
    }
}
