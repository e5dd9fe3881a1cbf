using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Token embeddings made of named vocabulary splits, each its own table, concatenated in a fixed order to define global
/// ids; a split can be trained while another stays frozen (e.g. new tokens on top of a pretrained table).
/// Ids must lie in [0, vocab): executors check them on the host where a batch enters (<see cref="CausalLMBatchCheck"/>).
/// </summary>
internal sealed class SplitTokenEmbeddings : nn.Module<Tensor, Tensor>
{
    private readonly (string Name, long Offset, long Size)[] _splits;

    public ModuleDict<Embedding> token_embedding;

    public SplitTokenEmbeddings(int hidden, IReadOnlyDictionary<string, int> sizes, IReadOnlyList<string> order, Device? device, ScalarType dtype)
        : base(nameof(SplitTokenEmbeddings))
    {
        long offset = 0;
        _splits = order.Select(n => { var s = (n, offset, (long)sizes[n]); offset += sizes[n]; return s; }).ToArray();
        token_embedding = new ModuleDict<Embedding>();
        foreach (var (name, _, size) in _splits) token_embedding.Add((name, nn.Embedding(size, hidden, device: device, dtype: dtype)));
        RegisterComponents();
    }

    /// <summary>The splits in id order, with their first global id and size.</summary>
    public IReadOnlyList<(string Name, long Offset, long Size)> Splits => _splits;

    /// <summary>The table of one split.</summary>
    public Parameter Weight(string split) => token_embedding[split].weight!;

    /// <summary>Late init: N(0, 1) per table, as <c>nn.Embedding</c>.</summary>
    public void ResetParameters(ParameterInitializer init)
    {
        foreach (var (name, _, _) in _splits) init.Normal($"{nameof(token_embedding)}.{name}.weight", Weight(name), 1.0);
    }

    public override Tensor forward(Tensor ids) // [B,S] int64 -> [B,S,H]
    {
        using var scope = NewDisposeScope();
        if (_splits.Length == 1) return token_embedding[_splits[0].Name].forward(ids).MoveToOuterDisposeScope();
        Tensor? sum = null;
        foreach (var (name, offset, size) in _splits)
        {
            using Scalar first = Scalars.Of(offset), end = Scalars.Of(offset + size), last = Scalars.Of(size - 1);
            var inSplit = ids.ge(first).logical_and(ids.lt(end));
            var local = ids.sub(first).clamp(Scalars.Zero, last);
            var part = token_embedding[name].forward(local) * inSplit.unsqueeze(-1).to(Weight(name).dtype);
            sum = sum is null ? part : sum.Plus(part);
        }
        return sum!.MoveToOuterDisposeScope();
    }
}
