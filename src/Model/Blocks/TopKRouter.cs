using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>The routing decision for a set of tokens.</summary>
/// <param name="Logits">[T,E] router logits in the activation dtype.</param>
/// <param name="Weights">[T,k] routing weights in the activation dtype.</param>
/// <param name="Experts">[T,k] int64 chosen experts.</param>
internal sealed record Routing(Tensor Logits, Tensor Weights, Tensor Experts);

/// <summary>Top-k router with HF numerics: softmax in float32, top-k, optional renormalisation, cast back.</summary>
internal sealed class TopKRouter : nn.Module<Tensor, Tensor>
{
    private readonly int _topK;
    private readonly bool _renormalize;

    /// <summary>[E,H] router projection (HF <c>mlp.gate.weight</c>).</summary>
    public Parameter weight;

    public TopKRouter(int hidden, int experts, int topK, bool renormalize, Device? device, ScalarType dtype) : base(nameof(TopKRouter))
    {
        _topK = topK;
        _renormalize = renormalize;
        weight = new Parameter(empty(experts, hidden, dtype: dtype, device: device));
        RegisterComponents();
    }

    /// <summary>Experts chosen per token.</summary>
    public int TopK => _topK;

    /// <summary>Whether the chosen experts' weights are renormalised to sum to 1 (<c>norm_topk_prob</c>).</summary>
    public bool Renormalize => _renormalize;

    /// <summary>Late init: U(-1/√H, 1/√H), as a bias-free <c>nn.Linear</c>.</summary>
    public void ResetParameters(ParameterInitializer init) => init.Uniform(nameof(weight), weight, 1 / Math.Sqrt(weight.shape[1]));

    /// <summary>Router logits only.</summary>
    public override Tensor forward(Tensor x) => nn.functional.linear(x, weight);

    /// <summary>Routes tokens <paramref name="x"/> [T,H].</summary>
    public Routing Route(Tensor x)
    {
        using var scope = NewDisposeScope();
        var logits = nn.functional.linear(x, weight);                                      // [T,E]
        var probs = logits.softmax(-1, ScalarType.Float32);
        var (weights, experts) = probs.topk(_topK, -1);                    // [T,k]
        if (_renormalize) weights = weights / weights.sum(-1, keepdim: true);
        return new Routing(logits.MoveToOuterDisposeScope(), weights.to(x.dtype).MoveToOuterDisposeScope(), experts.MoveToOuterDisposeScope());
    }
}
