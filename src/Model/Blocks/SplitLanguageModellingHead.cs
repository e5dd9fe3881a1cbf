using Microsoft.ML.Qwen3Moe.Autograd;
using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// LM head over named vocabulary splits (one bias-free projection each, logits concatenated in split order). It returns
/// either logits or the per-token negative log-likelihood the seed calls <c>logps</c>, computed in float32 over chunks
/// of tokens: the full [tokens, vocab] logits exist only in training, and only within the model's
/// <see cref="KernelOptions.LossLogitsBudgetBytes"/>.
/// </summary>
internal sealed class SplitLanguageModellingHead : nn.Module<Tensor, Tensor>
{
    private readonly string[] _order;
    private readonly Func<Parameter>? _tied;
    private readonly KernelOptions _kernels;

    public ModuleDict<Linear> lm_head;

    /// <param name="hidden">Model width H.</param>
    /// <param name="sizes">Rows of each vocabulary split.</param>
    /// <param name="order">Split order (defines global ids).</param>
    /// <param name="device">Device of the projections.</param>
    /// <param name="dtype">Dtype of the projections.</param>
    /// <param name="tiedWeight">With tied embeddings, returns the embedding table [V,H] to project with (looked up on each use, so device moves are followed);
    /// the head then owns no parameter.</param>
    /// <param name="kernels">Kernel choices of the loss (default <see cref="KernelOptions.Default"/>).</param>
    public SplitLanguageModellingHead(int hidden, IReadOnlyDictionary<string, int> sizes, IReadOnlyList<string> order, Device? device, ScalarType dtype,
        Func<Parameter>? tiedWeight = null, KernelOptions? kernels = null)
        : base(nameof(SplitLanguageModellingHead))
    {
        _kernels = kernels ?? KernelOptions.Default;
        _order = order.ToArray();
        if (tiedWeight is not null && _order.Length != 1) throw new ArgumentException("A tied head needs exactly one vocabulary split.", nameof(tiedWeight));
        lm_head = new ModuleDict<Linear>();
        if (tiedWeight is null)
            foreach (var name in _order) lm_head.Add((name, nn.Linear(hidden, sizes[name], false, device, dtype)));
        RegisterComponents();
        _tied = tiedWeight;
    }

    /// <summary>Whether the head projects with the (shared) embedding table.</summary>
    public bool IsTied => _tied is not null;

    /// <summary>Token rows per chunk of the per-token loss.</summary>
    public long ChunkTokens { get; set; } = 1024;

    /// <summary>The [size, H] projection of one split.</summary>
    public Parameter Weight(string name) => _tied is not null ? _tied() : lm_head[name].weight!;

    /// <summary>Late init: U(-1/√H, 1/√H) per split, as a bias-free <c>nn.Linear</c>; a tied head owns nothing to reset.</summary>
    public void ResetParameters(ParameterInitializer init)
    {
        if (_tied is not null) return;
        foreach (var name in _order) init.Linear($"{nameof(lm_head)}.{name}", lm_head[name]);
    }

    /// <summary>Logits [.., V] in the activation dtype.</summary>
    public override Tensor forward(Tensor h)
    {
        if (_order.Length == 1) return nn.functional.linear(h, Weight(_order[0]));
        using var scope = NewDisposeScope();
        return cat(_order.Select(n => nn.functional.linear(h, Weight(n))).ToArray(), -1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Per-token NLL: float32 [B,S], positive, 0 where the label is <see cref="CausalLMLoss.IgnoreIndex"/>. Labels are aligned (not
    /// shifted). Computed by <see cref="ChunkedLinearCrossEntropy"/>: scoring holds at most <see cref="ChunkTokens"/> rows of
    /// logits; training keeps all of them for the backward pass when they fit <see cref="KernelOptions.LossLogitsBudgetBytes"/>.
    /// </summary>
    public Tensor PerTokenNll(Tensor h, Tensor labels) // [B,S,H], [B,S] -> [B,S]
    {
        using var scope = NewDisposeScope();
        var rows = h.reshape(-1, h.shape[^1]);                                                      // [N,H]
        var weights = _order.Select(n => (Tensor)Weight(n)).ToList();
        long logitBytes = rows.shape[0] * weights.Sum(w => w.shape[0]) * rows.element_size();
        var settings = new ChunkedLinearCrossEntropy.Settings(ChunkTokens, logitBytes <= _kernels.LossLogitsBudgetBytes, _kernels.FusedLossGradient);
        var nll = ChunkedLinearCrossEntropy.Apply(rows, weights, labels.reshape(-1).to(ScalarType.Int64), settings);
        return nll.reshape(labels.shape).MoveToOuterDisposeScope();
    }
}
