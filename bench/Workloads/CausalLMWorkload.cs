using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// Runs a <see cref="WorkloadOptions"/> the way <c>bench_hf.py</c> runs Hugging Face: random weights (fixed seed, built
/// directly on the device in the workload dtype), one random batch, forward scoring (no autograd; per-token NLL) and
/// training steps (forward, backward, AdamW; no clipping and no auxiliary loss, as HF's run), warm-up then timed
/// iterations, each phase ending on a device sync. Prints a Markdown table and a <c>RESULT {json}</c> line.
/// </summary>
internal static class CausalLMWorkload
{
    public static int Run(WorkloadOptions o)
    {
        bool cuda = o.Device == DeviceType.CUDA;
        using var memory = cuda ? GpuMemoryMonitor.TryStart(1) : null;
        if (cuda) InitializeDeviceType(DeviceType.CUDA);
        var device = new Device(o.Device, cuda ? 0 : -1);
        var kernels = new KernelOptions
        {
            ExpertPermutation = o.Moe switch { "indexadd" => ExpertPermutation.IndexAdd, "gather" => ExpertPermutation.GatherBmm, _ => ExpertPermutation.Auto },
            FusedRmsNorm = o.FusedNorm,
            GroupedQueryAttention = o.GqaKernel,
            LossLogitsBudgetBytes = o.HeadRecompute ? 0 : KernelOptions.Default.LossLogitsBudgetBytes,
            FusedLossGradient = !o.UnfusedLossGradient,
        };
        long contextBytes = 0;
        if (cuda)
        {
            using (var probe = ones(1, device: device)) Sync(device);
            contextBytes = memory?.Current(0) ?? 0;
        }

        var build = Stopwatch.StartNew();
        using var model = new Qwen3MoeForCausalLM(o.Parameters, device: device, dtype: o.DType, kernels: kernels);
        model.InitializeWeights(o.Seed);
        if (o.Lora is { } lora) Lora.LoraAdapters.Attach(model, lora);
        model.EnableCheckpointing = o.Checkpointing;
        Sync(device);
        double buildSeconds = build.Elapsed.TotalSeconds;
        long parameters = model.parameters().Sum(p => p.numel());
        long trainable = model.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
        Console.WriteLine($"{o.Name}: {parameters / 1e9:F2} B parameters ({trainable / 1e6:F1} M trainable), {o.Parameters.Model.NumHiddenLayers} layers, " +
            $"batch {o.Batch}x{o.Sequence}, {o.DType} on {device}; built in {buildSeconds:F1} s; {o.Variant}");

        using var scope = NewDisposeScope();
        using var gen = new Generator((ulong)o.Seed);  // TorchSharp generators are CPU-only: draw the ids on the host, then move them
        var ids = randint(0, o.Parameters.Model.VocabSize, new long[] { o.Batch, o.Sequence }, dtype: ScalarType.Int64, generator: gen).to(device);
        var batch = new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };
        long tokens = (long)o.Batch * o.Sequence;
        double flopsPerToken = TrainingFlops.PerToken(o.Parameters, o.Sequence);
        using var executor = new SingleStageExecutor(model);
        var phases = new List<PhaseResult>();

        if (o.Score)
        {
            memory?.ResetPeak();
            double s = Time(o, device, () => executor.Score(batch).Dispose());
            phases.Add(new PhaseResult("forward (scoring: fp32 per-token NLL)", tokens / s, s * 1e3, tokens / s * flopsPerToken / 3, memory?.Peak(0),
                contextBytes));
            // what bench_hf.py times: model(input_ids) returning bf16 logits, no loss
            var logitsOnly = new CausalLMBatch { InputIds = ids, ReturnLogits = true };
            s = Time(o, device, () =>
            {
                using var _ = no_grad();
                model.forward(logitsOnly).Dispose();
            });
            phases.Add(new PhaseResult("forward (logits, as bench_hf.py)", tokens / s, s * 1e3, tokens / s * flopsPerToken / 3, memory?.Peak(0), contextBytes));
        }
        if (o.Train)
        {
            memory?.ResetPeak();
            using var trainer = new CausalLMTrainer(executor, WorkloadOptions.HfLikeTraining(o.Float32MasterWeights, o.FusedOptimizer));
            var batches = new[] { batch };
            double s = Time(o, device, () => trainer.TrainStep(batches));
            phases.Add(new PhaseResult("train step", tokens / s, s * 1e3, tokens / s * flopsPerToken, memory?.Peak(0), contextBytes));
            if (o.Profile && cuda) StepProfile.Run(model, batch, s * 1e3, o.Iterations);
        }

        Report(o, device, parameters, flopsPerToken, phases);
        return 0;
    }

    private static double Time(WorkloadOptions o, Device device, Action step)
    {
        for (int i = 0; i < o.Warmup; i++) step();
        Sync(device);
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < o.Iterations; i++) step();
        Sync(device);
        return watch.Elapsed.TotalSeconds / o.Iterations;
    }

    private static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }

    private static void Report(WorkloadOptions o, Device device, long parameters, double flopsPerToken, List<PhaseResult> phases)
    {
        const double GiB = 1L << 30;
        Console.WriteLine();
        Console.WriteLine("| workload | phase | tokens/s | step ms | model TFLOP/s | MFU vs 989 | peak GPU GiB (NVML, incl. context) | context GiB |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var p in phases)
        {
            string mem = p.PeakBytes is long b ? $"{b / GiB:F2}" : "n/a";
            string ctx = p.PeakBytes is null ? "n/a" : $"{p.ContextBytes / GiB:F2}";
            string mfu = device.type == DeviceType.CUDA ? $"{p.Flops / TrainingFlops.PeakFlops * 100:F1}%" : "n/a";
            Console.WriteLine($"| {o.Name} | {p.Phase} | {p.TokensPerSecond:N0} | {p.StepMilliseconds:F1} | {p.Flops / 1e12:F1} | {mfu} | {mem} | {ctx} |");
        }
        var json = JsonSerializer.Serialize(new
        {
            workload = o.Name,
            variant = o.Variant,
            device = device.ToString(),
            dtype = o.DType.ToString(),
            layers = o.Parameters.Model.NumHiddenLayers,
            batch = o.Batch,
            seq = o.Sequence,
            parameters,
            train_flops_per_token = flopsPerToken,
            phases = phases.Select(p => new
            {
                phase = p.Phase,
                tokens_per_s = Math.Round(p.TokensPerSecond, 1),
                step_ms = Math.Round(p.StepMilliseconds, 2),
                model_tflops = Math.Round(p.Flops / 1e12, 2),
                mfu_vs_989 = device.type == DeviceType.CUDA ? Math.Round(p.Flops / TrainingFlops.PeakFlops, 4) : (double?)null,
                peak_gpu_used_GiB = p.PeakBytes is long b ? Math.Round(b / GiB, 3) : (double?)null,
                cuda_context_GiB = p.PeakBytes is null ? (double?)null : Math.Round(p.ContextBytes / GiB, 3),
                peak_minus_context_GiB = p.PeakBytes is long c ? Math.Round((c - p.ContextBytes) / GiB, 3) : (double?)null,
            }),
        });
        Console.WriteLine("RESULT " + json);
        if (o.JsonPath is not null) File.WriteAllText(o.JsonPath, json);
    }

    private sealed record PhaseResult(string Phase, double TokensPerSecond, double StepMilliseconds, double Flops, long? PeakBytes, long ContextBytes);
}
