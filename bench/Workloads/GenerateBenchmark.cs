using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// Generation on W2 shapes (48-layer Qwen3-30B-A3B, random bf16 weights, one CUDA GPU), as <c>generate_hf.py</c> runs
/// Hugging Face's <c>generate</c>: random prompts of 512 tokens, 256 new tokens, greedy, no EOS, batch 1 and 32. Reports
/// time to first token (prefill + first pick), decode tokens/s over the remaining steps, a decode step split into host
/// issue time and device time, and the memory-bandwidth bound (weight bytes a decode step must read / HBM bandwidth).
/// Flags: <c>--layers N --prompt P --new N --batches 1,32 --bandwidth-tbs 4.8 --json PATH</c>, and the decode kernel
/// choices <c>--scripted-decode true|false --gather-pairs N</c> (<see cref="KernelOptions.ScriptedDecode"/>,
/// <see cref="KernelOptions.DecodeGatherPairs"/>; defaults as the library's).
/// </summary>
internal sealed class GenerateBenchmark : IBenchmark
{
    public string Name => "generate";

    public string Description
        => "KV-cache generation on W2 shapes (bf16, CUDA): TTFT and decode tokens/s at batch 1 and 32 " +
            "(flags: --layers --prompt --new --batches --json --scripted-decode --gather-pairs)";

    public int Run(string[] args)
    {
        var parameters = WorkloadOptions.Qwen3_30B_A3B();
        int prompt = 512, newTokens = 256;
        int[] batches = { 1, 32 };
        double bandwidth = 4.8e12;
        string? json = null;
        var kernels = KernelOptions.Default;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--layers": parameters = parameters with { Model = parameters.Model with { NumHiddenLayers = int.Parse(Next(),
                    CultureInfo.InvariantCulture) } }; break;
                case "--prompt": prompt = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--new": newTokens = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--batches": batches = Next().Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(); break;
                case "--bandwidth-tbs": bandwidth = double.Parse(Next(), CultureInfo.InvariantCulture) * 1e12; break;
                case "--json": json = Next(); break;
                case "--scripted-decode": kernels = kernels with { ScriptedDecode = bool.Parse(Next()) }; break;
                case "--gather-pairs": kernels = kernels with { DecodeGatherPairs = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                default: throw new ArgumentException($"Unknown flag {args[i]}.");
            }
        }
        bool cudaAvailable = cuda.is_available();
        if (cudaAvailable) InitializeDeviceType(DeviceType.CUDA);
        var device = cudaAvailable ? CUDA : CPU;
        var dtype = cudaAvailable ? ScalarType.BFloat16 : ScalarType.Float32;
        var watch = Stopwatch.StartNew();
        using var model = new Qwen3MoeForCausalLM(parameters, device: device, dtype: dtype, kernels: kernels);
        model.InitializeWeights(1234);
        Sync(device);
        Console.WriteLine($"generate: {parameters.Model.NumHiddenLayers} layers, {dtype} on {device}, built in {watch.Elapsed.TotalSeconds:F1} s; " +
            $"prompt {prompt}, {newTokens} new tokens, greedy; scripted decode {kernels.ScriptedDecode}, gather pairs {kernels.DecodeGatherPairs}");
        var generator = new CausalLMGenerator(new[] { model });
        var random = new Random(0);
        var results = new List<object>();
        Console.WriteLine("| batch | TTFT ms | decode tokens/s | per-sequence tokens/s | decode step ms | host issue ms/step | weight GB/step | " +
            "bandwidth bound tokens/s |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (int b in batches)
        {
            var prompts = Enumerable.Range(0, b).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0,
                prompt).Select(_ => random.Next(parameters.Model.VocabSize)).ToArray()).ToArray();
            var greedy = new GenerationOptions { MaxNewTokens = newTokens };
            generator.Generate(prompts, new GenerationOptions { MaxNewTokens = 8 });                 // warm-up (allocator, kernels)
            Sync(device);
            watch.Restart();
            foreach (var _ in generator.Stream(prompts, new GenerationOptions { MaxNewTokens = 1 })) { }
            double ttft = watch.Elapsed.TotalSeconds;
            watch.Restart();
            var generated = generator.Generate(prompts, greedy);
            Sync(device);
            double total = watch.Elapsed.TotalSeconds;
            int made = generated[0].TokenIds.Count;
            double decodeSeconds = total - ttft;
            double tokensPerSecond = b * (made - 1) / decodeSeconds;
            var (stepMs, hostMs) = ProfileStep(generator, model, prompts, device);
            double bytes = WeightBytesPerStep(parameters, b, dtype);
            double bound = b / (bytes / bandwidth);
            Console.WriteLine($"| {b} | {ttft * 1e3:F1} | {tokensPerSecond:F1} | {tokensPerSecond / b:F1} | {stepMs:F2} | {hostMs:F2} | " +
                $"{bytes / 1e9:F2} | {bound:F0} |");
            results.Add(new { batch = b, prompt, @new = made, ttft_s = ttft, total_s = total, decode_tokens_per_s = tokensPerSecond,
                per_sequence_tokens_per_s = tokensPerSecond / b, decode_step_ms = stepMs, host_issue_ms = hostMs, weight_bytes_per_step = bytes,
                    bandwidth_bound_tokens_per_s = bound });
        }
        var line = JsonSerializer.Serialize(new { workload = "generate", layers = parameters.Model.NumHiddenLayers, dtype = dtype.ToString(),
            scripted_decode = kernels.ScriptedDecode, gather_pairs = kernels.DecodeGatherPairs, results });
        Console.WriteLine("RESULT " + line);
        if (json is not null) File.WriteAllText(json, line);
        return 0;
    }

    /// <summary>
    /// One decode step, timed twice over 16 steps after a prefill: until the host has issued every kernel (no sync), and
    /// until the device has finished. Equal times mean the step is bound by the host's kernel launches, not the device.
    /// </summary>
    private static (double StepMs, double HostMs) ProfileStep(CausalLMGenerator generator, Qwen3MoeForCausalLM model,
        IReadOnlyList<IReadOnlyList<int>> prompts, Device device)
    {
        int b = prompts.Count, p = prompts[0].Count, steps = 16;
        using var cache = new KvCache(model, b, p + 2 * steps + 1);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(prompts.SelectMany(x => x.Select(i => (long)i)).ToArray(), new long[] { b, p }).to(device);
        var positions = arange(p, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(b, p);
        generator.Forward(new[] { cache }, ids, positions).Dispose();
        var next = ids.narrow(1, p - 1, 1).contiguous();
        double host = 0, total = 0;
        for (int s = 0; s < 2 * steps; s++)
        {
            using var stepScope = NewDisposeScope();
            var pos = full(b, 1, (long)(p + s), dtype: ScalarType.Int64, device: device);
            Sync(device);
            var watch = Stopwatch.StartNew();
            var logits = generator.Forward(new[] { cache }, next, pos);
            double issued = watch.Elapsed.TotalMilliseconds;
            Sync(device);
            if (s >= steps)
            {
                host += issued;
                total += watch.Elapsed.TotalMilliseconds;
            }
        }
        return (total / steps, host / steps);
    }

    /// <summary>Weight bytes one decode step reads: attention, norms and router of every layer, the experts the batch's tokens pick (expected distinct count
    /// under uniform routing), and the head.</summary>
    private static double WeightBytesPerStep(Qwen3MoeForCausalLMParameters parameters, int batch, ScalarType dtype)
    {
        var m = parameters.Model;
        var l = m.Layer;
        double h = l.HiddenSize, q = (double)l.NumAttentionHeads * l.HeadDim, kv = (double)l.NumKeyValueHeads * l.HeadDim;
        double attention = h * q * 2 + h * kv * 2;
        double expert = 3.0 * h * l.MoeIntermediateSize;
        double distinct = l.NumExperts * (1 - Math.Pow(1 - (double)l.ExpertsTopK / l.NumExperts, batch));
        double perLayer = attention + l.NumExperts * h + distinct * expert;
        double elements = perLayer * m.NumHiddenLayers + (double)m.VocabSize * h;
        return elements * (dtype == ScalarType.Float32 ? 4 : 2);
    }

    private static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }
}
