using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;
using Microsoft.ML.Qwen3Moe.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// Memory flatness of the tiny model on CPU: 500 training steps (2 micro-batches each, a checkpoint every 50 steps) and
/// scoring 10,000 rows. Prints resident memory after a full GC and the thread's live-tensor count at regular points.
/// </summary>
/// <remarks>
/// Usage: <c>memory [--steps N] [--rows N] [--bound-mib M] [--threads T]</c>. Exit code 1 when the live-tensor count after warm-up
/// (the first 20%: allocator and checkpoint buffers settle) changes, or resident memory grows by more than the bound
/// (default 16 MiB) after warm-up.
/// </remarks>
internal sealed class MemoryFlatness : IBenchmark
{
    public string Name => "memory";

    public string Description =>
        "RSS and live tensors over 500 tiny training steps and 10,000 scored rows: [--steps N] [--rows N] [--bound-mib M] [--threads T]";

    public int Run(string[] args)
    {
        int steps = 500, rows = 10_000;
        long bound = 16L << 20;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--steps": steps = int.Parse(args[++i]); break;
                case "--rows": rows = int.Parse(args[++i]); break;
                case "--bound-mib": bound = long.Parse(args[++i]) << 20; break;
                case "--threads": set_num_threads(int.Parse(args[++i])); break;
                default: Console.Error.WriteLine($"unknown argument '{args[i]}'"); return 2;
            }
        }
        Console.WriteLine($"tiny Qwen3-MoE on CPU, {Environment.ProcessorCount} cores, torch threads {get_num_threads()}, .NET {Environment.Version}");
        using var model = new Qwen3MoeForCausalLM(TinyParameters());
        model.InitializeWeights(1);
        using var executor = new SingleStageExecutor(model);
        bool ok = Train(executor, steps, bound);
        ok &= Score(executor, rows, bound);
        return ok ? 0 : 1;
    }

    private static bool Train(SingleStageExecutor executor, int steps, long bound)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"qwen3moe-memory-{Guid.NewGuid():N}");
        try
        {
            using var trainer = new CausalLMTrainer(executor, new TrainingOptions { TotalSteps = steps, LearningRate = 1e-3, WarmupSteps = 10 });
            var checkpointer = new TrainingCheckpointer(new TrainingCheckpointerOptions { Directory = folder, SaveEverySteps = 50, KeepLast = 2 });
            var probe = new Probe($"training {steps} steps", Math.Max(1, steps / 10));
            var clock = Stopwatch.StartNew();
            for (int s = 0; s < steps; s++)
            {
                using (NewDisposeScope())
                {
                    trainer.TrainStep(new[] { Batch(2L * s, 4, 32), Batch(2L * s + 1, 4, 32) });
                    checkpointer.SaveIfDue(executor, trainer, new DataPosition(0, trainer.Step));
                }
                probe.At(s + 1);
            }
            Console.WriteLine($"  {steps / clock.Elapsed.TotalSeconds:F1} steps/s");
            return probe.Report(bound);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    private static bool Score(SingleStageExecutor executor, int rows, long bound)
    {
        const int BatchRows = 50;
        int batches = (rows + BatchRows - 1) / BatchRows;
        var probe = new Probe($"scoring {rows:N0} rows", Math.Max(1, batches / 10));
        double total = 0;
        var clock = Stopwatch.StartNew();
        for (int b = 0; b < batches; b++)
        {
            using (NewDisposeScope())
            {
                var nll = executor.Score(Batch(100_000 + b, Math.Min(BatchRows, rows - b * BatchRows), 32));
                total += nll.sum().item<float>();
            }
            probe.At(b + 1);
        }
        Console.WriteLine($"  {rows / clock.Elapsed.TotalSeconds:F0} rows/s (total NLL {total:F1})");
        return probe.Report(bound);
    }

    /// <summary>RSS after a full GC and live tensors every <c>every</c> iterations; the second point (20%) is the end of warm-up.</summary>
    private sealed class Probe(string what, int every)
    {
        private readonly List<(int At, long Rss, long Live, double Ms)> _points = new();
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public void At(int i)
        {
            if (i % every != 0) return;
            double ms = _clock.Elapsed.TotalMilliseconds;
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            using var p = Process.GetCurrentProcess();
            _points.Add((i, p.WorkingSet64, DisposeScopeManager.Statistics.ThreadTotalLiveCount, ms));
            _clock.Restart();
        }

        public bool Report(long bound)
        {
            Console.WriteLine(what);
            foreach (var (at, rss, live, ms) in _points)
                Console.WriteLine($"  {at,6}: RSS {rss / (1 << 20),6:F0} MiB, live tensors {live}, {ms / every,7:F2} ms per iteration");
            var (_, rss0, live0, _) = _points[Math.Min(1, _points.Count - 1)];
            long growth = _points.Skip(Math.Min(1, _points.Count - 1)).Max(p => p.Rss) - rss0;
            bool liveFlat = _points.All(p => p.Live == _points[0].Live);
            Console.WriteLine($"  after warm-up: RSS growth {growth / 1024.0 / 1024:F1} MiB (bound {bound >> 20} MiB), live tensors " +
                $"{(liveFlat ? "flat" : "GROWING")}");
            return liveFlat && growth <= bound;
        }
    }

    private static CausalLMBatch Batch(long seed, int rows, int length)
    {
        using var gen = new Generator((ulong)seed + 7);
        var ids = randint(0, 50, new long[] { rows, length }, generator: gen, dtype: ScalarType.Int64);
        return new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };
    }

    private static Qwen3MoeForCausalLMParameters TinyParameters() => new()
    {
        Model = new Qwen3MoeParameters
        {
            Layer = new Qwen3MoeLayerParameters
            {
                HiddenSize = 32, MoeIntermediateSize = 16, IntermediateSize = 48, NumExperts = 4, ExpertsTopK = 2,
                NumAttentionHeads = 4, NumKeyValueHeads = 2, RmsNormEps = 1e-6, HeadDim = 8,
            },
            NumHiddenLayers = 2, RopeBase = 10000, MaxPositionIds = 64,
            SplitVocabSize = new Dictionary<string, int> { ["default"] = 50 }, SplitVocabOrder = new[] { "default" },
        },
    };
}
