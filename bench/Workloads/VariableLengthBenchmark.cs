using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// Issue 17's workload: the ML.NET estimator driven as a user drives it on one GPU (<c>MLContext.GpuDeviceId = 0</c>,
/// <c>FineTune</c> of a new model with W1 shapes: 4 layers of Qwen3-30B-A3B, bf16, bf16 optimizer state, batch 2,
/// <c>MaxSequenceLength</c> 2048, no shuffling), on rows cut from the bench corpus into N-character chunks: 20,000
/// characters give rows that are all truncated to 2,048 tokens, 9,000 characters rows of varying lengths. Then
/// <c>Transform</c> scores the rows twice. Prints tokens/s of real (unpadded) tokens per window of optimizer steps (from
/// the time each step's log line arrives; every step is logged and ends on a host read of its loss), of the whole
/// <c>Fit</c> from the "Fine-tuning on" line (after model construction and tokenization) to the last step, and of each
/// <c>Transform</c> pass; then a <c>RESULT {json}</c> line.
/// With <c>--pack</c> the estimator packs the rows (<c>PackSequences</c>), and a step's real tokens are those of its packed rows;
/// <c>--no-warmup</c> turns <c>WarmUpLengthBuckets</c> off (it acts with <c>--pad-multiple</c> above 1).
/// Usage: <c>varlen [--chars 9000] [--steps 120] [--rows 400] [--score-rows N] [--window 5] [--pad-multiple N] [--attention flash|sdpa] [--pack]
/// [--no-warmup]
/// [--corpus PATH] [--tokenizer DIR] [--json PATH] [--plan-only] [--cpu-smoke]</c> (<c>--plan-only</c>: print the rows' lengths and
/// padding, then stop; <c>--cpu-smoke</c>: tiny layers on the CPU, to check the workload itself).
/// </summary>
internal sealed partial class VariableLengthBenchmark : IBenchmark
{
    private const int MaxLength = 2048;
    private const int Batch = 2;

    public string Name => "varlen";

    public string Description => "estimator Fit/Transform on W1 shapes with rows of N characters (varying token lengths): " +
        "[--chars 9000] [--steps 120] [--rows 400] [--score-rows N] [--window 5] [--pad-multiple N] [--attention flash|sdpa] [--pack] [--no-warmup] " +
        "[--corpus PATH] " +
        "[--tokenizer DIR] [--json PATH] [--plan-only]";

    public int Run(string[] args)
    {
        int chars = 9000, steps = 120, maxRows = 400, window = 5, padMultiple = new Qwen3MoeEstimator.Options().PadToMultipleOf;
        int? scoreRows = null;
        string corpus = Path.Combine(AppContext.BaseDirectory, "data", "bench-corpus.txt"), tokenizerDir = "tests/Fixtures/tokenizer";
        string? json = null;
        bool smoke = false, planOnly = false, pack = false, warmUp = true;
        var kernels = KernelOptions.Default;
        int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--chars": chars = Int(args[++i]); break;
                case "--steps": steps = Int(args[++i]); break;
                case "--rows": maxRows = Int(args[++i]); break;
                case "--score-rows": scoreRows = Int(args[++i]); break;
                case "--window": window = Int(args[++i]); break;
                case "--pad-multiple": padMultiple = Int(args[++i]); break;
                case "--corpus": corpus = args[++i]; break;
                case "--tokenizer": tokenizerDir = args[++i]; break;
                case "--json": json = args[++i]; break;
                case "--cpu-smoke": smoke = true; break;
                case "--plan-only": planOnly = true; break;
                case "--pack": pack = true; break;
                case "--no-warmup": warmUp = false; break;
                case "--attention": kernels = kernels with { FlashAttention = args[++i] == "flash" }; break;
                default: throw new ArgumentException($"Unknown option '{args[i]}'.");
            }
        }

        var text = File.ReadAllText(corpus);
        var docs = new List<Row>();
        for (int i = 0; i + chars <= text.Length && docs.Count < maxRows; i += chars) docs.Add(new Row { Text = text.Substring(i, chars) });
        // the estimator's own tokenization, to count the real tokens of each step (rows in order: no shuffling)
        var lengths = Qwen3Tokenizer.FromFolder(tokenizerDir).EncodeBatch(docs.Select(d => d.Text).ToList(), maxTokens: MaxLength)
            .Select(ids => ids.Length).ToArray();
        // the rows the estimator trains on, in order (no shuffling): one document each, or the documents packed as it packs them
        var rows = pack ? SequencePacker.Pack(lengths, MaxLength) : Enumerable.Range(0, lengths.Length).Select(i => new[] { i }).ToArray();
        var rowLengths = rows.Select(r => r.Sum(d => lengths[d])).ToArray();
        steps = Math.Min(steps, (rows.Length + Batch - 1) / Batch);  // one epoch
        long StepTokens(int step) => rowLengths.Skip((step - 1) * Batch).Take(Batch).Sum(n => (long)n);  // step is 1-based
        long StepPositions(int step)  // batch positions, padding included
        {
            var batch = rowLengths.Skip((step - 1) * Batch).Take(Batch).ToArray();
            return batch.Length * Math.Min((batch.Max() + padMultiple - 1) / padMultiple * padMultiple, MaxLength);
        }

        using var memory = GpuMemoryMonitor.TryStart(1);
        var clock = Stopwatch.StartNew();
        double? start = null;
        var marks = new List<(int Step, double Seconds, long GpuBytes, double Loss)>();
        var ml = new MLContext(seed: 1) { GpuDeviceId = smoke ? null : 0, FallbackToCpu = false };
        ml.Log += (_, e) =>
        {
            if (e.Message.Contains("Fine-tuning on", StringComparison.Ordinal)) start = clock.Elapsed.TotalSeconds;
            if (e.Message.Contains("WarmUpLengthBuckets:", StringComparison.Ordinal)) Console.WriteLine(e.Message); // counted in the Fit time
            var m = StepLine().Match(e.Message);
            if (m.Success)
            {
                double loss = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
                marks.Add((Int(m.Groups[1].Value), clock.Elapsed.TotalSeconds, memory?.Current(0) ?? 0, loss));
            }
        };
        var w1 = WorkloadOptions.Qwen3_30B_A3B();
        w1 = w1 with { Model = w1.Model with { NumHiddenLayers = 4 } };
        if (smoke)
            w1 = w1 with { Model = w1.Model with { NumHiddenLayers = 1, Layer = w1.Model.Layer with
                { HiddenSize = 32, MoeIntermediateSize = 16, IntermediateSize = 32, NumExperts = 4, ExpertsTopK = 2, NumAttentionHeads = 2,
                    NumKeyValueHeads = 1, HeadDim = 16 } } };
        var options = new Qwen3MoeEstimator.Options
        {
            NewModel = w1,
            TokenizerPath = tokenizerDir, TextColumnName = "Text", BatchSize = Batch, MaxSequenceLength = MaxLength, MaxSteps = steps,
            Precision = smoke ? Qwen3MoePrecision.Float32 : Qwen3MoePrecision.BFloat16, Float32MasterWeights = false, LogEveryNStep = 1,
            Shuffle = false, WarmupRatio = 0,
            ScoringBatchSize = 8, PadToMultipleOf = padMultiple, Kernels = kernels, PackSequences = pack, WarmUpLengthBuckets = warmUp,
        };
        Console.WriteLine($"varlen: {docs.Count} rows of {chars} characters, {lengths.Sum():N0} tokens (min {lengths.Min()}, max {lengths.Max()}, " +
            $"{lengths.Count(n => n == MaxLength)} truncated to {MaxLength}); {steps} steps of {Batch} " +
            $"{(pack ? $"packed rows ({rows.Length} in all)" : "rows")}; " +
            $"PadToMultipleOf {padMultiple}, " +
            $"flash attention {kernels.FlashAttention}: " +
            $"{Enumerable.Range(1, steps).Sum(StepTokens) / (double)Enumerable.Range(1, steps).Sum(StepPositions):P1} of the batch positions are real tokens");
        if (planOnly) return 0;
        var fitClock = Stopwatch.StartNew();
        using var model = ml.Qwen3Moe().FineTune(options).Fit(ml.Data.LoadFromEnumerable(docs));
        double fitWall = fitClock.Elapsed.TotalSeconds;
        if (start is null || marks.Count != steps) throw new InvalidOperationException($"Expected {steps} step log lines, saw {marks.Count}.");

        var stepSeconds = marks.Select((m, i) => m.Seconds - (i == 0 ? start.Value : marks[i - 1].Seconds)).ToArray();
        var windows = new List<Window>();
        for (int first = 1; first <= steps; first += window)
        {
            int last = Math.Min(first + window - 1, steps);
            long tokens = Enumerable.Range(first, last - first + 1).Sum(StepTokens);
            double seconds = marks[last - 1].Seconds - (first == 1 ? start.Value : marks[first - 2].Seconds);
            long positions = Enumerable.Range(first, last - first + 1).Sum(StepPositions);
            windows.Add(new Window(first, last, tokens, positions, seconds, marks[last - 1].GpuBytes));
        }
        long fitTokens = Enumerable.Range(1, steps).Sum(StepTokens);
        double fitSeconds = marks[^1].Seconds - start.Value;
        int slowest = Array.IndexOf(stepSeconds, stepSeconds.Max()) + 1;

        var scoreData = ml.Data.LoadFromEnumerable(docs.Take(scoreRows ?? docs.Count));
        var passes = new double[2];
        long scored = 0;
        for (int pass = 0; pass < 2; pass++)
        {
            var watch = Stopwatch.StartNew();
            var counts = model.Transform(scoreData).GetColumn<int>("TokenCount").ToArray();
            passes[pass] = watch.Elapsed.TotalSeconds;
            scored = counts.Sum(n => (long)n);
        }

        const double GiB = 1L << 30;
        Console.WriteLine();
        Console.WriteLine($"| steps | real tokens | real / batch positions | seconds | tokens/s | GPU used GiB (NVML) |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var w in windows)
            Console.WriteLine($"| {w.First}-{w.Last} | {w.Tokens:N0} | {w.Tokens / (double)w.Positions:P1} | {w.Seconds:F2} | {w.TokensPerSecond:N0} | " +
                $"{w.GpuBytes / GiB:F1} |");
        Console.WriteLine($"step ms: {string.Join(" ", stepSeconds.Select(s => (s * 1e3).ToString("F0", CultureInfo.InvariantCulture)))}");
        Console.WriteLine($"FIT {steps} steps, {fitTokens:N0} real tokens in {fitSeconds:F2} s after model construction and tokenization: " +
            $"{fitTokens / fitSeconds:N0} tokens/s ({fitWall:F1} s wall in all; slowest step {slowest}, {stepSeconds[slowest - 1] * 1e3:F0} ms)");
        Console.WriteLine($"TRANSFORM {scored:N0} tokens: first pass {scored / passes[0]:N0} tokens/s, second pass {scored / passes[1]:N0} tokens/s " +
            $"(first/second {passes[1] / passes[0]:P0})");
        var result = JsonSerializer.Serialize(new
        {
            workload = "varlen",
            chars,
            rows = docs.Count,
            steps,
            pad_to_multiple_of = padMultiple,
            flash_attention = kernels.FlashAttention,
            pack_sequences = pack,
            tokens_truncated_rows = lengths.Count(n => n == MaxLength),
            windows = windows.Select(w => new
            {
                first = w.First, last = w.Last, tokens = w.Tokens, positions = w.Positions, seconds = Math.Round(w.Seconds, 3),
                tokens_per_s = Math.Round(w.TokensPerSecond),
                gpu_used_GiB = Math.Round(w.GpuBytes / GiB, 2),
            }),
            step_ms = stepSeconds.Select(s => Math.Round(s * 1e3, 1)),
            losses = marks.Select(m => m.Loss),
            fit_tokens = fitTokens,
            fit_seconds = Math.Round(fitSeconds, 3),
            fit_tokens_per_s = Math.Round(fitTokens / fitSeconds),
            fit_wall_seconds = Math.Round(fitWall, 2),
            transform_tokens = scored,
            transform_first_tokens_per_s = Math.Round(scored / passes[0]),
            transform_second_tokens_per_s = Math.Round(scored / passes[1]),
            gpu_peak_GiB = memory is null ? (double?)null : Math.Round(memory.Peak(0) / GiB, 2),
        });
        Console.WriteLine("RESULT " + result);
        if (json is not null) File.WriteAllText(json, result);
        return 0;
    }

    [GeneratedRegex(@"Step (\d+)/\d+: loss ([0-9.eE+-]+|NaN)")]
    private static partial Regex StepLine();

    private sealed record Window(int First, int Last, long Tokens, long Positions, double Seconds, long GpuBytes)
    {
        public double TokensPerSecond => Tokens / Seconds;
    }

    /// <summary>One input row (ML.NET reads the public property).</summary>
    public sealed class Row
    {
        /// <summary>The text to train on and score.</summary>
        public string Text { get; set; } = "";
    }
}
