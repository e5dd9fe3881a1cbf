using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// Where a sequence length never seen before costs time on the GPU (issue 17): each kernel of a W1 step (bf16, batch 2,
/// Qwen3-30B-A3B layer shapes) and the whole W1 train step and scoring forward are timed twice at each new length, the
/// first call and a repeat at the same shape, each between device syncs, after a warm-up at 2048 (so the caching
/// allocator already holds blocks large enough for every later, shorter length). A kernel whose first call costs much
/// more than its repeat re-plans per shape. Prints a table and a <c>RESULT {json}</c> line.
/// With <c>--parity</c> it only compares the attention kernels' numerics instead: SDPA's own choice (cuDNN on an H200) and
/// flash attention in bf16, each against a float32 reference on the same bf16-rounded inputs, forward and backward.
/// Usage: <c>shapes [--lengths 1901,1937,...] [--json PATH] [--parity]</c>.
/// </summary>
internal sealed class ShapeChurnBenchmark : IBenchmark
{
    // TorchSharp binds neither the backend choice nor the explicit flash kernel: both through TorchScript, as AtenScript does
    private static readonly Lazy<jit.CompilationUnit> Choice = new(() => jit.compile(
        "def sdp_choice(q, k, v):\n" +
        "    return torch.tensor(torch._fused_sdp_choice(q, k, v, is_causal=True, enable_gqa=True))\n"));

    private static readonly Lazy<jit.CompilationUnit> Flash = new(() => jit.compile(
        "def flash(q, k, v):\n" +
        "    return torch._scaled_dot_product_flash_attention(q, k, v, 0.0, True)[0]\n"));

    public string Name => "shapes";

    public string Description =>
        "first call vs repeat at new sequence lengths, per kernel of a W1 step and for the whole step (CUDA): [--lengths a,b] [--json PATH]";

    public int Run(string[] args)
    {
        int[] lengths = { 1792, 1901, 1920, 1937, 1990, 2030 };
        string? json = null;
        bool parity = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--lengths": lengths = args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(); break;
                case "--json": json = args[++i]; break;
                case "--parity": parity = true; break;
                default: throw new ArgumentException($"Unknown option '{args[i]}'.");
            }
        }
        InitializeDeviceType(DeviceType.CUDA);
        var device = new Device(DeviceType.CUDA, 0);
        var w1 = WorkloadOptions.Qwen3_30B_A3B();
        w1 = w1 with { Model = w1.Model with { NumHiddenLayers = 4 } };
        var layer = w1.Model.Layer;
        const int Batch = 2;
        int hidden = layer.HiddenSize, heads = layer.NumAttentionHeads, kvHeads = layer.NumKeyValueHeads, headDim = layer.HeadDim;
        var bf16 = ScalarType.BFloat16;
        Tensor Leaf(params long[] shape) => randn(shape, dtype: bf16, device: device).requires_grad_(true);
        if (parity)
        {
            AttentionParity(device, heads, kvHeads, headDim);
            return 0;
        }

        try
        {
            using var q = randn(Batch, heads, 2048, headDim, dtype: bf16, device: device);
            using var k = randn(Batch, kvHeads, 2048, headDim, dtype: bf16, device: device);
            using var choice = Choice.Value.invoke<Tensor>("sdp_choice", q, k, k);
            Console.WriteLine($"SDPA backend for q [2,{heads},2048,{headDim}] bf16, causal, enable_gqa: {choice.item<long>()} " +
                "(0 math, 1 flash, 2 efficient, 3 cuDNN)");
        }
        catch (Exception e)
        {
            Console.WriteLine($"SDPA backend choice not readable: {e.Message.Split('\n')[0]}");
        }

        var probes = new List<(string Name, Func<int, Action> Make)>
        {
            ("sdpa enable_gqa, causal (scripted; default backend)", s => Attention(s, (q, k, v) => AtenScript.GqaAttention(q, k, v, null))),
            ("sdpa expanded K/V, causal (TorchSharp)", s => Attention(s, (q, k, v) =>
                nn.functional.scaled_dot_product_attention(q, Expand(k, heads), Expand(v, heads), is_casual: true))),
            ("flash attention, GQA, causal (scripted)", s => Attention(s, (q, k, v) => Flash.Value.invoke<Tensor>("flash", q, k, v))),
            ("rms_norm [2,S,H] (scripted)", s =>
            {
                var x = Leaf(Batch, s, hidden);
                var w = Leaf(hidden);
                return () => Backward(AtenScript.RmsNorm(x, w, 1e-6));
            }),
            ("grouped_mm [2S*8,H] x [E,I,H] (scripted)", s =>
            {
                long rows = (long)Batch * s * layer.ExpertsTopK;
                var x = Leaf(rows, hidden);
                var w = Leaf(layer.NumExperts, layer.MoeIntermediateSize, hidden);
                var ends = Enumerable.Range(1, layer.NumExperts).Select(e => (int)(rows * e / layer.NumExperts)).ToArray();
                var offsets = tensor(ends, dtype: ScalarType.Int32).to(device);
                return () => Backward(AtenScript.GroupedMm(x, w, offsets), contiguous: true);
            }),
            ("linear [2S,H] x [nH*D,H] (cuBLAS)", s =>
            {
                var x = Leaf(Batch, s, hidden);
                var w = Leaf(heads * headDim, hidden);
                return () => Backward(nn.functional.linear(x, w));
            }),
        };
        Action Attention(int s, Func<Tensor, Tensor, Tensor, Tensor> f)
        {
            var q = Leaf(Batch, heads, s, headDim);
            var k = Leaf(Batch, kvHeads, s, headDim);
            var v = Leaf(Batch, kvHeads, s, headDim);
            return () => Backward(f(q, k, v));
        }

        var rows = new List<Row>();
        foreach (var (name, make) in probes)
        {
            try
            {
                rows.Add(Measure(name, make, lengths, device));
            }
            catch (Exception e)
            {
                Console.WriteLine($"{name}: failed: {e.Message.Split('\n')[0]}");
            }
        }

        using var model = new Qwen3MoeForCausalLM(w1, device: device, dtype: bf16);
        model.InitializeWeights(1234);
        using var executor = new SingleStageExecutor(model);
        using var trainer = new CausalLMTrainer(executor, WorkloadOptions.HfLikeTraining(float32MasterWeights: false, fusedOptimizer: true));
        CausalLMBatch Batched(int rows, int s)
        {
            var ids = randint(0, w1.Model.VocabSize, new long[] { rows, s }, dtype: ScalarType.Int64).to(device);
            return new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };
        }
        rows.Add(Measure("W1 train step, batch 2 (model)", s =>
        {
            var batch = new[] { Batched(Batch, s) };
            return () => trainer.TrainStep(batch);
        }, lengths, device));
        model.eval();
        rows.Add(Measure("W1 scoring forward, batch 8 (model)", s =>
        {
            var batch = Batched(8, s);
            return () => executor.Score(batch).Dispose();
        }, lengths, device));

        Console.WriteLine();
        Console.WriteLine($"| kernel (new lengths {string.Join(", ", lengths)}) | 2048 ms | first call ms (mean) | repeat ms (mean) " +
            "| first call ms (max) | extra per new shape ms |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var r in rows)
            Console.WriteLine($"| {r.Name} | {r.At2048Ms:F2} | {r.FirstMs.Average():F2} | {r.RepeatMs.Average():F2} | {r.FirstMs.Max():F2} | " +
                $"{r.FirstMs.Average() - r.RepeatMs.Average():F2} |");
        var result = JsonSerializer.Serialize(new
        {
            workload = "shapes",
            lengths,
            probes = rows.Select(r => new
            {
                name = r.Name, at_2048_ms = Round(r.At2048Ms), first_ms = r.FirstMs.Select(Round), repeat_ms = r.RepeatMs.Select(Round),
            }),
        });
        Console.WriteLine("RESULT " + result);
        if (json is not null) File.WriteAllText(json, result);
        return 0;
    }

    private static double Round(double ms) => Math.Round(ms, 3);

    /// <summary>Max |error| of SDPA's choice and of flash (bf16) against float32 causal attention, output and input gradients.</summary>
    private static void AttentionParity(Device device, int heads, int kvHeads, int headDim)
    {
        foreach (int s in new[] { 2048, 1901 })
        {
            using var scope = NewDisposeScope();
            manual_seed(5);
            var q0 = randn(new long[] { 2, heads, s, headDim }, device: device).to(ScalarType.BFloat16);
            var k0 = randn(new long[] { 2, kvHeads, s, headDim }, device: device).to(ScalarType.BFloat16);
            var v0 = randn(new long[] { 2, kvHeads, s, headDim }, device: device).to(ScalarType.BFloat16);
            var grad = randn(new long[] { 2, heads, s, headDim }, device: device).to(ScalarType.BFloat16);
            Tensor[] Run(Func<Tensor, Tensor, Tensor, Tensor> f, ScalarType dtype)
            {
                // fresh leaves per kernel: to(dtype) of a tensor already in that dtype is the tensor itself, and would accumulate gradients
                Tensor Leaf(Tensor t) => t.to(dtype).detach().clone().requires_grad_(true);
                var (q, k, v) = (Leaf(q0), Leaf(k0), Leaf(v0));
                var o = f(q, k, v);
                o.backward(new[] { grad.to(dtype) });
                return new[] { o, q.grad!, k.grad!, v.grad! }.Select(t => t.to(ScalarType.Float32)).ToArray();
            }
            var reference = Run((q, k, v) =>
            {
                using var scale = Scalars.Of(1.0 / Math.Sqrt(headDim));
                var scores = q.matmul(Expand(k, heads).transpose(-2, -1)).mul(scale);                     // [B,nH,S,S]
                var future = ones(s, s, dtype: ScalarType.Bool, device: device).triu(1);
                using var minusInf = Scalars.Of(double.NegativeInfinity);
                return scores.masked_fill(future, minusInf).softmax(-1).matmul(Expand(v, heads));         // [B,nH,S,D]
            }, ScalarType.Float32);
            string Errors(Tensor[] got) => string.Join(", ", new[] { "out", "dq", "dk", "dv" }.Select((n, i) =>
                $"{n} {got[i].sub(reference[i]).abs().max().item<float>():E2}"));
            Console.WriteLine($"attention parity S={s} (max |error| vs float32; max |reference| out " +
                $"{reference[0].abs().max().item<float>():F2}, dq {reference[1].abs().max().item<float>():F2}):");
            Console.WriteLine($"  sdpa (its backend choice), bf16: {Errors(Run((q, k, v) => AtenScript.GqaAttention(q, k, v, null), ScalarType.BFloat16))}");
            Console.WriteLine($"  flash attention, bf16:           {Errors(Run(AtenScript.CausalFlashAttention, ScalarType.BFloat16))}");
        }
    }

    private static Tensor Expand(Tensor kv, int heads)
    {
        long b = kv.shape[0], kvHeads = kv.shape[1], s = kv.shape[2], d = kv.shape[3];
        return kv.unsqueeze(2).expand(b, kvHeads, heads / kvHeads, s, d).reshape(b, heads, s, d);  // [B,nH,S,D]
    }

    private static void Backward(Tensor y, bool contiguous = false)
    {
        using (y)
        {
            if (contiguous) y.backward(new[] { ones_like(y) });  // _grouped_mm's backward refuses the stride-0 gradient of a sum
            else y.sum().backward();
        }
    }

    /// <summary>Warm-up twice at 2048, then per length: a first call and a repeat, each between device syncs.</summary>
    private static Row Measure(string name, Func<int, Action> make, int[] lengths, Device device)
    {
        using var scope = NewDisposeScope();
        var warm = make(2048);
        warm();
        warm();
        double at2048 = Time(warm, device);
        var first = new List<double>();
        var repeat = new List<double>();
        foreach (int s in lengths)
        {
            using var inner = NewDisposeScope();
            var step = make(s);
            first.Add(Time(step, device));
            repeat.Add(Time(step, device));
        }
        Console.WriteLine($"{name}: at 2048 {at2048:F1} ms; first {string.Join(" ", first.Select(t => t.ToString("F1", CultureInfo.InvariantCulture)))} ms; " +
            $"repeat {string.Join(" ", repeat.Select(t => t.ToString("F1", CultureInfo.InvariantCulture)))} ms");
        return new Row(name, at2048, first, repeat);
    }

    private static double Time(Action step, Device device)
    {
        cuda.synchronize(device);
        var watch = Stopwatch.StartNew();
        using (var scope = NewDisposeScope()) step();
        cuda.synchronize(device);
        return watch.Elapsed.TotalMilliseconds;
    }

    private sealed record Row(string Name, double At2048Ms, List<double> FirstMs, List<double> RepeatMs);
}
