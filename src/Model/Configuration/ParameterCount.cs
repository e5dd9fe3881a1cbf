using Microsoft.ML.Qwen3Moe.Pipelining;

namespace Microsoft.ML.Qwen3Moe.Configuration;

/// <summary>Parameter counts computed from shapes alone (nothing is allocated).</summary>
/// <param name="Total">Every parameter of the model (a tied head counted once).</param>
/// <param name="ActivePerToken">Parameters one token touches: embeddings, head, attention, norms, routers, dense MLPs and k experts per sparse layer.</param>
public readonly record struct ParameterCount(long Total, long ActivePerToken)
{
    /// <summary>Counts the parameters of the whole model described by <paramref name="p"/>.</summary>
    public static ParameterCount Of(Qwen3MoeForCausalLMParameters p)
    {
        var m = p.Model;
        long embeddings = Embeddings(p);
        long total = embeddings + m.Layer.HiddenSize, active = total;
        for (int i = 0; i < m.NumHiddenLayers; i++)
        {
            total += Layer(p, i, m.Layer.NumExperts);
            active += Layer(p, i, m.Layer.ExpertsTopK);
        }
        return new ParameterCount(total, active);
    }

    /// <summary>
    /// Parameters one pipeline stage holds: its decoder layers, the token embeddings on the first stage, the final norm
    /// and (untied) head on the last. The stages of a model add up to <see cref="Of"/>'s total.
    /// </summary>
    public static long OfStage(Qwen3MoeForCausalLMParameters p, PipelineStageInfo stage)
    {
        var m = p.Model;
        long h = m.Layer.HiddenSize, vocab = m.VocabSize;
        var (first, end) = LayerDistribution.DistributeLayersForPipelineStage(
            m.NumHiddenLayers, m.PipelineNumVirtualLayersPre, m.PipelineNumVirtualLayersPost, stage);
        long total = (stage.IsFirst ? vocab * h : 0) + (stage.IsLast ? h + (p.TieWordEmbeddings ? 0 : vocab * h) : 0);
        for (int i = first; i < end; i++) total += Layer(p, i, m.Layer.NumExperts);
        return total;
    }

    private static long Embeddings(Qwen3MoeForCausalLMParameters p) => (long)p.Model.VocabSize * p.Model.Layer.HiddenSize * (p.TieWordEmbeddings ? 1 : 2);

    /// <summary>Parameters of layer <paramref name="index"/> counting <paramref name="experts"/> experts when it is sparse.</summary>
    private static long Layer(Qwen3MoeForCausalLMParameters p, int index, int experts)
    {
        var l = p.Model.Layer;
        long h = l.HiddenSize, d = l.HeadDim;
        long attention = h * l.NumAttentionHeads * d * 2 + h * l.NumKeyValueHeads * d * 2 + 2 * d
                         + (l.AttentionBias ? l.NumAttentionHeads * d + 2L * l.NumKeyValueHeads * d + h : 0);
        long common = attention + 2 * h;
        return p.Model.IsSparseLayer(index)
            ? common + (long)l.NumExperts * h + 3L * h * l.MoeIntermediateSize * experts
            : common + 3L * h * l.IntermediateSize;
    }
}
