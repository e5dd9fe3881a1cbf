using Microsoft.ML.Qwen3Moe.Autograd;
using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// GPU equality checks of the custom GPU paths against the ATen fallbacks the CPU tests trust (CI has no GPU). Each line
/// prints the measured error and its tolerance; the exit code is the number of failed checks.
/// <list type="number">
/// <item>The fused logit-gradient kernel (<see cref="AtenScript.LogitGradient"/>, NNC on CUDA) in bf16 against the same
/// formula in float64 on the CPU: at most one bf16 rounding apart.</item>
/// <item>The LM head's loss at W1 size (4,096 tokens, hidden 2048, vocabulary 151,936, bf16): every combination of kept or
/// recomputed logits and fused or ATen gradient against the CPU-tested one (recomputed, ATen), per-token NLL and the
/// hidden-state and weight gradients, and all of them against float32 arithmetic on the GPU.</item>
/// <item>A tiny model in float32 on CUDA with the default kernels against the same weights on the CPU: losses and every
/// gradient.</item>
/// </list>
/// </summary>
internal sealed class VerifyBenchmark : IBenchmark
{
    private int _failures;

    public string Name => "verify";

    public string Description => "GPU equality checks of the custom GPU paths (fused loss gradient, kept logits) against their CPU-tested fallbacks";

    public int Run(string[] args)
    {
        InitializeDeviceType(DeviceType.CUDA);
        LogitGradientKernel();
        LossHeadVariants();
        ExpertPermutations(4096, 2048, 768, ScalarType.BFloat16, 2e-2);
        ExpertPermutations(512, 256, 96, ScalarType.Float32, 1e-5);
        TinyModelCudaVersusCpu();
        Console.WriteLine(_failures == 0 ? "verify: all checks passed" : $"verify: {_failures} check(s) failed");
        return _failures;
    }

    private void Check(string what, Tensor actual, Tensor expected, double relToMax)
    {
        using var scope = NewDisposeScope();
        var a = actual.detach().to(ScalarType.Float64);
        var e = expected.detach().to(a.device).to(ScalarType.Float64);
        double diff = (a - e).abs().max().item<double>(), scale = e.abs().max().item<double>();
        bool ok = diff <= relToMax * scale;
        if (!ok) _failures++;
        Console.WriteLine($"| {what} | max abs diff {diff:E2} | max abs {scale:E2} | ratio {diff / Math.Max(scale, 1e-30):E2} | tolerance {relToMax:E1} | " +
            $"{(ok ? "ok" : "FAIL")} |");
    }

    /// <summary>bf16 has 8 significant bits: one rounding is at most 2^-8 relative (3.9e-3); the tolerance allows two.</summary>
    private void LogitGradientKernel()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var logits = randn(new long[] { 256, 151936 }, device: CUDA).Times(3).to(ScalarType.BFloat16);   // [c,V]
        var lse = logits.to(ScalarType.Float32).logsumexp(1);                                    // [c]
        var upstream = rand(new long[] { 256 }, device: CUDA).Over(4096);                                // [c]
        for (int run = 0; run < 3; run++) AtenScript.LogitGradient(logits, lse.unsqueeze(1), upstream.unsqueeze(1)); // profiling runs, then fused
        var fused = AtenScript.LogitGradient(logits, lse.unsqueeze(1), upstream.unsqueeze(1));
        var (l64, u64) = (lse.cpu().to(ScalarType.Float64).unsqueeze(1), upstream.cpu().to(ScalarType.Float64).unsqueeze(1));
        var exact = logits.cpu().to(ScalarType.Float64).sub(l64).exp().mul(u64);
        Check("fused logit gradient (CUDA bf16) vs float64 CPU", fused, exact, 8e-3);
    }

    private void LossHeadVariants()
    {
        const long N = 4096, H = 2048, V = 151936, Chunk = 1024;
        using var scope = NewDisposeScope();
        manual_seed(2);
        var h = randn(new[] { N, H }, device: CUDA).to(ScalarType.BFloat16);
        var w = randn(new[] { V, H }, device: CUDA).Times(0.02).to(ScalarType.BFloat16);
        var labels = randint(0, V, new[] { N }, dtype: ScalarType.Int64, device: CUDA);
        labels.narrow(0, 0, 64).fill_(Scalars.IgnoreIndex);
        var upstream = rand(new[] { N }, device: CUDA).Over(N);                                   // a non-uniform upstream gradient

        (Tensor Nll, Tensor Gh, Tensor Gw) Run(Tensor hidden, Tensor weight, ChunkedLinearCrossEntropy.Settings settings)
        {
            var hv = hidden.detach().requires_grad_();
            var wv = weight.detach().requires_grad_();
            Tensor nll = null!;
            for (int i = 0; i < 3; i++) // the fused kernel is compiled on the second call
            {
                hv.grad = null;
                wv.grad = null;
                nll = ChunkedLinearCrossEntropy.Apply(hv, new[] { wv }, labels, settings);
                (nll * upstream).sum().backward();
                ReturnedGradients.ReleaseAll();
            }
            return (nll.detach(), hv.grad!, wv.grad!);
        }

        var reference = Run(h, w, new ChunkedLinearCrossEntropy.Settings(Chunk));
        var f32 = Run(h.to(ScalarType.Float32), w.to(ScalarType.Float32), new ChunkedLinearCrossEntropy.Settings(Chunk));
        // bf16 logits are rounded before the float32 softmax: the losses of the bf16 head differ from float32 arithmetic by
        // about |logit| · 2^-9; the gradients by a few bf16 roundings
        Check("bf16 head (recompute, ATen) vs float32 arithmetic: NLL", reference.Nll, f32.Nll, 5e-3);
        Check("bf16 head (recompute, ATen) vs float32 arithmetic: d hidden", reference.Gh, f32.Gh, 2e-2);
        Check("bf16 head (recompute, ATen) vs float32 arithmetic: d weight", reference.Gw, f32.Gw, 2e-2);
        foreach (var (keep, fused) in new[] { (false, true), (true, false), (true, true) })
        {
            var variant = Run(h, w, new ChunkedLinearCrossEntropy.Settings(Chunk, keep, fused));
            string name = $"{(keep ? "keep" : "recompute")}, {(fused ? "fused" : "ATen")}";
            Check($"bf16 head ({name}) vs (recompute, ATen): NLL", variant.Nll, reference.Nll, 1e-5);
            Check($"bf16 head ({name}) vs (recompute, ATen): d hidden", variant.Gh, reference.Gh, 1e-2);
            Check($"bf16 head ({name}) vs (recompute, ATen): d weight", variant.Gw, reference.Gw, 1e-2);
        }
    }

    /// <summary>
    /// The routed experts on CUDA (128 experts, top-8, random routing) with <see cref="ExpertPermutation.GatherBmm"/>
    /// (gathers in both passes) against <see cref="ExpertPermutation.IndexAdd"/> (the CPU-tested atomic scatter): output
    /// and the gradients of the tokens, routing weights and both expert weights. bf16: the atomic path rounds every add,
    /// the gather path once, so a few bf16 roundings apart; float32: summation order only.
    /// </summary>
    private void ExpertPermutations(long tokens, int hidden, int inter, ScalarType dtype, double tolerance)
    {
        const int E = 128, K = 8;
        using var scope = NewDisposeScope();
        (Tensor Y, Tensor[] Grads) Run(ExpertPermutation kind)
        {
            using var inner = NewDisposeScope();
            manual_seed(3);   // seeds the CPU generator only (TorchSharp): every random tensor is drawn on the CPU, then moved
            Tensor Random(params long[] shape) => randn(shape).to(dtype).to(CUDA);
            using var experts = new Blocks.GroupedExperts(E, hidden, inter, CUDA, dtype, kind);
            using (no_grad())
            {
                experts.gate_up_proj.copy_(Random(experts.gate_up_proj.shape).Times(0.02));
                experts.down_proj.copy_(Random(experts.down_proj.shape).Times(0.02));
            }
            var x = Random(tokens, hidden).requires_grad_();
            var logits = randn(tokens, E).to(CUDA).requires_grad_();
            var (w, ids) = logits.softmax(-1).topk(K, -1);
            w = w.div(w.sum(-1, keepdim: true)).to(dtype);
            var y = experts.Forward(x, new Blocks.Routing(logits, w, ids));
            y.backward(new[] { Random(y.shape) });
            return (y.detach().MoveToOuterDisposeScope(), new[] { x.grad!, logits.grad!, experts.gate_up_proj.grad!, experts.down_proj.grad! }
                .Select(g => g.MoveToOuterDisposeScope()).ToArray());
        }
        var atomic = Run(ExpertPermutation.IndexAdd);
        var gathered = Run(ExpertPermutation.GatherBmm);
        string what = $"experts {dtype} T={tokens}, GatherBmm vs IndexAdd";
        Check($"{what}: output", gathered.Y, atomic.Y, tolerance);
        string[] names = { "d tokens", "d router logits", "d gate_up_proj", "d down_proj" };
        for (int i = 0; i < names.Length; i++) Check($"{what}: {names[i]}", gathered.Grads[i], atomic.Grads[i], tolerance);
    }

    private void TinyModelCudaVersusCpu()
    {
        using var scope = NewDisposeScope();
        var p = CpuTinyBenchmark.Parameters;   // 2 layers, width 64, 8 experts top-2, vocabulary 1,000
        using var cpu = new Qwen3MoeForCausalLM(p);
        cpu.ResetParameters(5);
        using var gpu = new Qwen3MoeForCausalLM(p, device: CUDA);
        using (no_grad())
            foreach (var ((_, a), (_, b)) in cpu.named_parameters().Zip(gpu.named_parameters())) b.copy_(a);
        manual_seed(6);
        var ids = randint(0, 1000, new long[] { 2, 48 });
        var batch = new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };
        Tensor Loss(Qwen3MoeForCausalLM m, CausalLMBatch b)
        {
            var o = m.forward(b.Map(t => t.to(m.Device)));
            var loss = o.TokenNll!.sum();
            loss.backward();
            ReturnedGradients.ReleaseAll();
            return loss.detach();
        }
        for (int i = 0; i < 3; i++) // compile the fused kernels, then compare
        {
            foreach (var q in gpu.parameters()) q.grad = null;
            Loss(gpu, batch);
        }
        foreach (var q in gpu.parameters()) q.grad = null;
        var lossGpu = Loss(gpu, batch);
        var lossCpu = Loss(cpu, batch);
        // float32 on both devices: summation order only (the CPU parity suite's 1e-4 on logits)
        Check("tiny model float32, CUDA vs CPU: summed NLL", lossGpu, lossCpu, 1e-5);
        foreach (var ((name, a), (_, b)) in gpu.named_parameters().Zip(cpu.named_parameters()))
            if (b.grad is not null) Check($"tiny model float32, CUDA vs CPU: d {name}", a.grad!, b.grad, 1e-4);
    }
}
