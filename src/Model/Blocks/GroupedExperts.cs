using Microsoft.ML.Qwen3Moe.Autograd;
using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// The routed SwiGLU experts as stacked weights in the transformers-5 layout: <c>gate_up_proj</c> [E, 2I, H] and
/// <c>down_proj</c> [E, H, I]. Token-expert pairs are sorted by expert (stable), gathered, multiplied per group through
/// <see cref="GroupedMatmul"/> and combined back per token (as the model's <see cref="KernelOptions.ExpertPermutation"/> says); the counts stay on the device
/// (no host sync).
/// </summary>
internal sealed class GroupedExperts : nn.Module<Tensor, Tensor>
{
    private readonly int _experts;
    private readonly ExpertPermutation _permutation;

    public Parameter gate_up_proj;
    public Parameter down_proj;

    public GroupedExperts(int experts, int hidden, int intermediate, Device? device, ScalarType dtype, ExpertPermutation permutation = ExpertPermutation.Auto)
        : base(nameof(GroupedExperts))
    {
        _experts = experts;
        _permutation = permutation;
        gate_up_proj = new Parameter(empty(new long[] { experts, 2L * intermediate, hidden }, dtype: dtype, device: device));
        down_proj = new Parameter(empty(new long[] { experts, hidden, intermediate }, dtype: dtype, device: device));
        RegisterComponents();
    }

    /// <summary>Per-expert LoRA pairs added inside <see cref="Forward"/>, or null.</summary>
    internal Lora.ExpertsAdapter? Adapter { get; set; }

    /// <summary>Late init: U(-1/√in, 1/√in) per projection (in = H for gate/up, I for down), as d9d's grouped linears.</summary>
    public void ResetParameters(ParameterInitializer init)
    {
        init.Uniform(nameof(gate_up_proj), gate_up_proj, 1 / Math.Sqrt(gate_up_proj.shape[2]));
        init.Uniform(nameof(down_proj), down_proj, 1 / Math.Sqrt(down_proj.shape[2]));
    }

    /// <summary>Use <see cref="Forward"/>: experts need the routing.</summary>
    public override Tensor forward(Tensor x) => throw new NotSupportedException("Call Forward(x, routing).");

    /// <param name="x">[T,H] tokens.</param>
    /// <param name="routing">The router's choice for those tokens.</param>
    /// <returns>[T,H] weighted sum of each token's experts.</returns>
    public Tensor Forward(Tensor x, Routing routing)
    {
        using var scope = NewDisposeScope();
        long tokens = x.shape[0], topK = routing.Experts.shape[1];
        var flat = routing.Experts.reshape(-1);                                             // [N] token-major pairs
        var (_, perm) = flat.sort(0, stable: true);                                         // sorted row -> pair
        using var k = Scalars.Of(topK);
        var token = perm.div(k, rounding_mode: RoundingMode.floor);                      // [N] source token of each row
        var offsets = flat.to(ScalarType.Float32).histc(_experts, 0, _experts - 1).cumsum(0, ScalarType.Int32); // [E], device-side
        bool needsGrad = is_grad_enabled() && (x.requires_grad || routing.Weights.requires_grad || gate_up_proj.requires_grad || down_proj.requires_grad
            || Adapter is { RequiresGrad: true });
        bool gather = _permutation == ExpertPermutation.GatherBmm || (_permutation == ExpertPermutation.Auto && !needsGrad);
        // gather mode: pair -> sorted row, so that the backward passes of both gathers gather too (no atomic adds)
        Tensor? inverse = null;
        if (gather)
        {
            using var rowCount = Scalars.Of(perm.shape[0]);
            inverse = empty_like(perm).scatter_(0, perm, arange(rowCount, dtype: perm.dtype, device: perm.device));   // [N]
        }
        var xs = gather && needsGrad ? PermutedRowGather.Apply(x, token, inverse!, topK) : x.index_select(0, token);   // [N,H]
        var gu = GroupedMatmul.Apply(xs, gate_up_proj, offsets);                            // [N,2I]
        if (Adapter is not null) gu = Adapter.AddGateUp(gu, xs, offsets, training);
        var halves = gu.chunk(2, -1);                                                       // 2 x [N,I]
        var act = nn.functional.silu(halves[0]) * halves[1];                                // [N,I]
        var y = GroupedMatmul.Apply(act, down_proj, offsets);                               // [N,H] in expert order
        if (Adapter is not null) y = Adapter.AddDown(y, act, offsets, training);
        Tensor outp;
        if (gather)
        {
            // back to pair order: each token's k rows are adjacent and one bmm weighs and sums them (fp32 accumulation)
            var rows = (needsGrad ? PermutedRowGather.Apply(y, inverse!, perm, 1) : y.index_select(0, inverse!)).view(tokens, topK, -1); // [T,k,H]
            outp = routing.Weights.unsqueeze(1).bmm(rows).squeeze(1);                        // [T,1,k]·[T,k,H] -> [T,H]
        }
        else
        {
            var w = routing.Weights.reshape(-1).index_select(0, perm).unsqueeze(-1);        // [N,1]
            outp = zeros_like(x).index_add_(0, token, y * w, Scalars.OneF);                          // [T,H]
        }
        return outp.MoveToOuterDisposeScope();
    }
}
