using Microsoft.ML.Qwen3Moe.Configuration;

namespace Microsoft.ML.Qwen3Moe.Benchmarks.Workloads;

/// <summary>
/// Model FLOPs per token as <c>bench_hf.py</c> and perf-reference 3.4 count them (Megatron's convention: matmul
/// parameters touched per token × 6 for forward + backward, the LM head included and the input embedding not, plus causal
/// attention with the causal half: <c>6·L·d_q·S</c>). Forward-only work is a third of it.
/// </summary>
internal static class TrainingFlops
{
    /// <summary>H100 SXM dense BF16 peak used for MFU (vendor spec, torchtitan's constant).</summary>
    public const double PeakFlops = 989e12;

    /// <summary>Training (forward + backward) FLOPs per token at sequence length <paramref name="seq"/>.</summary>
    public static double PerToken(Qwen3MoeForCausalLMParameters p, long seq, int? layers = null)
    {
        var m = p.Model;
        var l = m.Layer;
        int count = layers ?? m.NumHiddenLayers;
        double h = l.HiddenSize, dq = (double)l.NumAttentionHeads * l.HeadDim, dkv = (double)l.NumKeyValueHeads * l.HeadDim;
        double attention = h * (dq + 2 * dkv) + dq * h;
        double dense = 0;
        for (int i = 0; i < count; i++)
            dense += attention + (m.IsSparseLayer(i) ? h * l.NumExperts + 3.0 * l.ExpertsTopK * h * l.MoeIntermediateSize : 3.0 * h * l.IntermediateSize);
        dense += h * m.VocabSize;
        return 6 * dense + 6.0 * count * dq * seq;
    }
}
