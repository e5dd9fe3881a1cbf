using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// Where a training step's time goes (<c>--profile</c>): forward with the loss, backward, and the rest of
/// <see cref="CausalLMTrainer.TrainStep"/> (optimizer, reads of the loss); the LM head with its loss alone (forward,
/// forward+backward, from detached hidden states); each phase ends on a device sync, and "issue" is the host time to
/// launch it (issue ≈ wall means the host, not the GPU, sets the pace).
/// </summary>
internal static class StepProfile
{
    public static void Run(Qwen3MoeForCausalLM model, CausalLMBatch batch, double trainStepMs, int iterations)
    {
        var device = model.Device;
        var rows = new List<(string Phase, double IssueMs, double WallMs)>();
        var trainable = model.parameters().Where(p => p.requires_grad).ToList();
        using var count = Scalars.Of(Math.Max(batch.Labels!.ne(Scalars.IgnoreIndex).sum().item<long>(), 1));
        Tensor? loss = null;
        rows.Add(Measure("forward + loss (grad on)", iterations, device, () =>
        {
            foreach (var p in trainable) p.grad = null;
            loss = model.forward(batch).TokenNll!.sum().div(count);   // the iteration's dispose scope releases it
        }, after: () =>
        {
            loss!.backward();
            Autograd.ReturnedGradients.ReleaseAll();
        }));
        rows.Add(Measure("backward", iterations, device, () =>
        {
            using var o = model.forward(batch);
            using var l = o.TokenNll!.sum().div(count);
            foreach (var p in trainable) p.grad = null;
            cuda.synchronize(device);
            var watch = Stopwatch.StartNew();
            l.backward();
            Autograd.ReturnedGradients.ReleaseAll();
            return watch;
        }));
        double fwd = rows[0].WallMs, bwd = rows[1].WallMs;
        rows.Add(("rest of the train step (optimizer, loss reads, syncs)", double.NaN, trainStepMs - fwd - bwd));
        // the parts of the rest, on the gradients the last backward left
        rows.Add(Measure("  of which: gradient norm (non-finite guard, no clipping) + read", iterations, device,
            () => GradientClipping.ClipByGlobalNorm(trainable, double.PositiveInfinity).item<float>()));
        using (var adam = new FusedAdamW(trainable, 0.9, 0.999, 1e-8, 0.01))
            rows.Add(Measure("  of which: fused AdamW step (all parameters)", iterations, device, () => adam.Step(1e-9)));
        using (no_grad())
        {
            using var o = model.forward(batch);
            int topK = model.Parameters.Model.Layer.ExpertsTopK;
            rows.Add(Measure("  of which: auxiliary loss (reported, not trained) + read", iterations, device,
                () => CausalLMLoss.AuxiliaryLoss(o.RouterLogits, topK).item<float>()));
        }

        var head = model.lm_head!;
        using (var trunk = no_grad())
        {
            using var o = model.forward(batch with { Labels = null });
            var h = o.HiddenStates.detach().requires_grad_();
            rows.Add(Measure("LM head + loss forward (no grad)", iterations, device, () => head.PerTokenNll(h, batch.Labels!).Dispose()));
            using var grad = enable_grad();
            rows.Add(Measure("LM head + loss forward + backward", iterations, device, () =>
            {
                h.grad = null;
                foreach (var p in head.parameters()) p.grad = null;
                using var l = head.PerTokenNll(h, batch.Labels!).sum().div(count);
                l.backward();
                Autograd.ReturnedGradients.ReleaseAll();
            }));
        }
        foreach (var p in model.parameters()) p.grad = null;

        Console.WriteLine();
        Console.WriteLine($"| phase ({model.Model.Kernels}) | host issue ms | wall ms |");
        Console.WriteLine("|---|---|---|");
        foreach (var (phase, issue, wall) in rows) Console.WriteLine($"| {phase} | {(double.IsNaN(issue) ? "" : $"{issue:F1}")} | {wall:F1} |");
        Console.WriteLine($"| train step (timed above) | | {trainStepMs:F1} |");
    }

    /// <summary>Mean issue and wall time of <paramref name="step"/>; <paramref name="after"/> runs untimed after each.</summary>
    private static (string, double, double) Measure(string phase, int iterations, Device device, Action step, Action? after = null) =>
        Measure(phase, iterations, device, () =>
        {
            cuda.synchronize(device);
            var watch = Stopwatch.StartNew();
            step();
            return watch;
        }, after);

    /// <summary>As above, <paramref name="timed"/> returning a stopwatch it started after its own untimed set-up.</summary>
    private static (string, double, double) Measure(string phase, int iterations, Device device, Func<Stopwatch> timed, Action? after = null)
    {
        double issue = 0, wall = 0;
        for (int i = -1; i < iterations; i++)
        {
            using var scope = NewDisposeScope();
            var watch = timed();
            double issued = watch.Elapsed.TotalMilliseconds;
            cuda.synchronize(device);
            double done = watch.Elapsed.TotalMilliseconds;
            after?.Invoke();
            if (i < 0) continue; // warm-up
            issue += issued;
            wall += done;
        }
        return (phase, issue / iterations, wall / iterations);
    }
}
