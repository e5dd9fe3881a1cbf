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
        var l = m.Layer;
        long h = l.HiddenSize, d = l.HeadDim;
        long vocab = m.VocabSize;
        long embeddings = vocab * h * (p.TieWordEmbeddings ? 1 : 2);
        long attention = h * l.NumAttentionHeads * d * 2 + h * l.NumKeyValueHeads * d * 2 + 2 * d
                         + (l.AttentionBias ? l.NumAttentionHeads * d + 2L * l.NumKeyValueHeads * d + h : 0);
        long norms = 2 * h;
        long expert = 3L * h * l.MoeIntermediateSize;
        long router = (long)l.NumExperts * h;
        long dense = 3L * h * l.IntermediateSize;
        long total = embeddings + h, active = embeddings + h;
        for (int i = 0; i < m.NumHiddenLayers; i++)
        {
            long common = attention + norms;
            bool sparse = m.IsSparseLayer(i);
            total += common + (sparse ? router + expert * l.NumExperts : dense);
            active += common + (sparse ? router + expert * l.ExpertsTopK : dense);
        }
        return new ParameterCount(total, active);
    }
}
