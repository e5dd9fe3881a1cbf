using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Pipelining;
using Microsoft.ML.Qwen3Moe.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// The pipeline workload of issue 6: W1 with 8 layers, split into 2 stages on <c>cuda:0</c>/<c>cuda:1</c> and run by
/// <c>PipelineExecutor(stages, PipelineScheduleKind.OneForwardOneBackward, microBatches)</c> (default 4 micro-batches
/// of 2 x 2048 tokens per step), against the same model and step on one GPU (gradient accumulation over the same
/// micro-batches).
/// Usage: <c>pipeline [--micro N] [--layers L] [--iters N]</c>.
/// </summary>
internal sealed class PipelineBenchmark : IBenchmark
{
    public string Name => "pipeline";

    public string Description => "W1 with 8 layers: 2 pipeline stages (1F1B, >= 4 micro-batches) on 2 GPUs vs the same on one GPU";

    public int Run(string[] args)
    {
        int micro = 4, layers = 8, iters = 3;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--micro") micro = int.Parse(args[++i]);
            else if (args[i] == "--layers") layers = int.Parse(args[++i]);
            else if (args[i] == "--iters") iters = int.Parse(args[++i]);
        }
        using var memory = GpuMemoryMonitor.TryStart(2);
        InitializeDeviceType(DeviceType.CUDA);
        var p = WorkloadOptions.Qwen3_30B_A3B();
        p = p with { Model = p.Model with { NumHiddenLayers = layers } };
        using var gen = new Generator(7);
        var batches = Enumerable.Range(0, micro).Select(_ =>
        {
            var ids = randint(0, p.Model.VocabSize, new long[] { 2, 2048 }, dtype: ScalarType.Int64, generator: gen);
            return new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };
        }).ToArray();
        long tokens = micro * 2L * 2048;
        double flops = TrainingFlops.PerToken(p, 2048);
        var options = WorkloadOptions.HfLikeTraining(float32MasterWeights: false, fusedOptimizer: true);

        // The pipeline gets one batch of all rows, split by the executor into `micro` micro-batches; one GPU gets the same
        // rows as `micro` accumulated batches: the same optimizer step either way.
        var whole = new[] { new CausalLMBatch
            { InputIds = cat(batches.Select(b => b.InputIds!).ToArray(), 0), Labels = cat(batches.Select(b => b.Labels!).ToArray(), 0) } };

        double Measure(IStepExecutor executor, IReadOnlyList<CausalLMBatch> step)
        {
            using var trainer = new CausalLMTrainer(executor, options);
            trainer.TrainStep(step);
            foreach (var s in executor.Stages) cuda.synchronize(s.Device);
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < iters; i++) trainer.TrainStep(step);
            foreach (var s in executor.Stages) cuda.synchronize(s.Device);
            return watch.Elapsed.TotalSeconds / iters;
        }

        double two, one;
        {
            var stages = Enumerable.Range(0, 2)
                .Select(i => new Qwen3MoeForCausalLM(p, new PipelineStageInfo(i, 2), new Device(DeviceType.CUDA, i), ScalarType.BFloat16)).ToList();
            foreach (var s in stages) s.InitializeWeights(1234);
            using var executor = new PipelineExecutor(stages, PipelineScheduleKind.OneForwardOneBackward, micro);
            two = Measure(executor, whole);
            foreach (var s in stages) s.Dispose();
        }
        long peak0 = memory?.Peak(0) ?? 0, peak1 = memory?.Peak(1) ?? 0;
        memory?.ResetPeak();
        {
            using var model = new Qwen3MoeForCausalLM(p, device: new Device(DeviceType.CUDA, 0), dtype: ScalarType.BFloat16);
            model.InitializeWeights(1234);
            using var executor = new SingleStageExecutor(model);
            one = Measure(executor, batches);
        }
        Console.WriteLine("| setup | step ms | tokens/s | MFU per GPU | peak GiB (NVML) |");
        Console.WriteLine("|---|---|---|---|---|");
        Console.WriteLine($"| 2 stages, 1F1B, {micro} micro-batches, 2 GPUs | {two * 1e3:F1} | {tokens / two:N0} | " +
            $"{tokens / two * flops / 2 / TrainingFlops.PeakFlops * 100:F1}% | {peak0 / (double)(1L << 30):F1} / {peak1 / (double)(1L << 30):F1} |");
        Console.WriteLine($"| 1 GPU, {micro} accumulated micro-batches | {one * 1e3:F1} | {tokens / one:N0} | " +
            $"{tokens / one * flops / TrainingFlops.PeakFlops * 100:F1}% | {memory?.Peak(0) / (double)(1L << 30):F1} |");
        Console.WriteLine($"PIPELINE_BENCH " +
            $"{{\"micro_batches\":{micro},\"layers\":{layers},\"two_stage_step_ms\":{two * 1e3:F1},\"one_gpu_step_ms\":{one * 1e3:F1}," +
            $"\"speedup\":{one / two:F3},\"ideal_1f1b_speedup\":{2.0 * micro / (micro + 1):F3}}}");
        return 0;
    }
}
