using Microsoft.ML.Qwen3Moe.Kernels;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Sparse mixture-of-experts feed-forward: a <see cref="TopKRouter"/> (<c>gate</c>) and <see cref="GroupedExperts"/>
/// (<c>experts</c>), plus a device-side counter of how many top-k choices each expert received.
/// </summary>
internal sealed class MoeLayer : nn.Module<Tensor, Tensor>
{
    public TopKRouter gate;
    public GroupedExperts experts;

    public MoeLayer(int hidden, int numExperts, int intermediate, int topK, bool renormalize, Device? device, ScalarType dtype, ExpertPermutation permutation)
        : base(nameof(MoeLayer))
    {
        gate = new TopKRouter(hidden, numExperts, topK, renormalize, device, dtype);
        experts = new GroupedExperts(numExperts, hidden, intermediate, device, dtype, permutation);
        RegisterComponents();
        // [E] int64, non-persistent: looked up by name so that module-wide .to(device) moves are followed.
        register_buffer("tokens_per_expert", zeros(numExperts, dtype: ScalarType.Int64, device: device), persistent: false);
    }

    /// <summary>[E] int64: top-k choices per expert since the last <see cref="ResetStats"/>.</summary>
    public Tensor TokensPerExpert => get_buffer("tokens_per_expert")!;

    /// <summary>Zeroes <see cref="TokensPerExpert"/>.</summary>
    public void ResetStats()
    {
        using var _ = no_grad();
        TokensPerExpert.zero_();
    }

    /// <summary>Late init of the router and experts; zeroes the statistics.</summary>
    public void ResetParameters(ParameterInitializer init)
    {
        gate.ResetParameters(init.Scope(nameof(gate)));
        experts.ResetParameters(init.Scope(nameof(experts)));
        ResetStats();
    }

    /// <summary>Use <see cref="Forward"/>.</summary>
    public override Tensor forward(Tensor x) => Forward(x, null, countStatistics: true).Output;

    /// <param name="x">[B,S,H] hidden states.</param>
    /// <param name="tokenMask">Optional [B,S] mask: tokens where it is 0 are not counted in the statistics.</param>
    /// <param name="countStatistics">False during activation-checkpoint recomputation, so nothing is counted twice.</param>
    /// <returns>The output [B,S,H] and the router logits [B*S,E].</returns>
    public (Tensor Output, Tensor RouterLogits) Forward(Tensor x, Tensor? tokenMask, bool countStatistics)
    {
        using var scope = NewDisposeScope();
        var shape = x.shape;
        var tokens = x.reshape(-1, shape[^1]);                                              // [T,H]
        var routing = gate.Route(tokens);
        if (countStatistics)
        {
            using var _ = no_grad();
            var ones = tokenMask is null
                ? ones_like(routing.Experts)
                : tokenMask.reshape(-1, 1).to(ScalarType.Int64).expand_as(routing.Experts);
            TokensPerExpert.scatter_add_(0, routing.Experts.reshape(-1), ones.reshape(-1));
        }
        var y = experts.Forward(tokens, routing).reshape(shape);
        return (y.MoveToOuterDisposeScope(), routing.Logits.MoveToOuterDisposeScope());
    }
}
