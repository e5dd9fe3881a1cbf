using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Kernels;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Blocks;

/// <summary>The CUDA path's dispatch/combine index math, checked on the CPU against a per-token reference and the atomic path.</summary>
public class GroupedExpertsTests
{
    private const int Experts = 6, Hidden = 16, Inter = 8, TopK = 3, Tokens = 20;

    private static (GroupedExperts Experts, Routing Routing, Tensor X, Tensor Logits) Setup(long seed, ExpertPermutation permutation = ExpertPermutation.Auto)
    {
        manual_seed(seed);
        var experts = new GroupedExperts(Experts, Hidden, Inter, CPU, ScalarType.Float32, permutation);
        using (no_grad())
        {
            experts.gate_up_proj.normal_(0, 0.3);
            experts.down_proj.normal_(0, 0.3);
        }
        var x = randn(Tokens, Hidden).requires_grad_();
        var logits = randn(Tokens, Experts).requires_grad_();
        var (w, ids) = logits.softmax(-1).topk(TopK, -1);
        w = w / w.sum(-1, keepdim: true);
        return (experts, new Routing(logits, w, ids), x, logits);
    }

    /// <summary>out[t] = Σ_j w[t,j] · down[e](silu(gate[e] x) · up[e] x), one token at a time.</summary>
    private static Tensor Reference(GroupedExperts m, Tensor x, Routing r)
    {
        var rows = new List<Tensor>();
        var ids = r.Experts.data<long>().ToArray();
        for (int t = 0; t < Tokens; t++)
        {
            Tensor acc = zeros(Hidden);
            for (int j = 0; j < TopK; j++)
            {
                var e = ids[t * TopK + j];
                var gu = nn.functional.linear(x[t], m.gate_up_proj[e]).chunk(2, -1);
                acc = acc + r.Weights[t, j] * nn.functional.linear(nn.functional.silu(gu[0]) * gu[1], m.down_proj[e]);
            }
            rows.Add(acc);
        }
        return stack(rows);
    }

    private static (Tensor Y, Tensor[] Grads) RunWith(ExpertPermutation kind, long seed, bool reference = false)
    {
        var (m, r, x, logits) = Setup(seed, kind);
        var y = reference ? Reference(m, x, r) : m.Forward(x, r);
        manual_seed(99);
        var gy = randn_like(y);
        y.backward(new[] { gy });
        return (y.detach(), new[] { x.grad!.clone(), logits.grad!.clone(), m.gate_up_proj.grad!.clone(), m.down_proj.grad!.clone() });
    }

    [TestCase("GatherBmm")]
    [TestCase("IndexAdd")]
    [TestCase("Auto")]
    public void MatchesPerTokenReferenceForwardAndBackward(string strategy)
    {
        using var scope = NewDisposeScope();
        var kind = Enum.Parse<ExpertPermutation>(strategy);
        var (y, g) = RunWith(kind, 3);
        var (yr, gr) = RunWith(kind, 3, reference: true);
        TensorAssert.Close(y, yr, 1e-5, "output");
        string[] names = { "dx", "d router logits", "d gate_up_proj", "d down_proj" };
        for (int i = 0; i < g.Length; i++) TensorAssert.Close(g[i], gr[i], 1e-5, names[i]);
    }

    [TestCase("GatherBmm")]
    [TestCase("IndexAdd")]
    public void ExpertWithNoTokenAndRepeatedTokensAreHandled(string strategy)
    {
        using var scope = NewDisposeScope();
        var m = new GroupedExperts(Experts, Hidden, Inter, CPU, ScalarType.Float32, Enum.Parse<ExpertPermutation>(strategy));
        using (no_grad()) { m.gate_up_proj.normal_(0, 0.3); m.down_proj.normal_(0, 0.3); }
        var x = randn(4, Hidden);
        var ids = tensor(new long[] { 5, 0, 5, 0, 5, 0, 5, 0 }).view(4, 2);        // experts 1..4 get nothing
        var w = full(4, 2, 0.5f);
        var y = m.Forward(x, new Routing(zeros(4, Experts), w, ids));
        var e5 = nn.functional.linear(nn.functional.silu(nn.functional.linear(x, m.gate_up_proj[5]).chunk(2, -1)[0]) *
            nn.functional.linear(x, m.gate_up_proj[5]).chunk(2, -1)[1], m.down_proj[5]);
        var e0 = nn.functional.linear(nn.functional.silu(nn.functional.linear(x, m.gate_up_proj[0]).chunk(2, -1)[0]) *
            nn.functional.linear(x, m.gate_up_proj[0]).chunk(2, -1)[1], m.down_proj[0]);
        TensorAssert.Close(y, 0.5 * (e5 + e0), 1e-5, "two experts, half each");
    }

    [Test]
    public void ScoringWithoutGradientMatchesTraining()
    {
        using var scope = NewDisposeScope();
        var (m, r, x, _) = Setup(5);
        var trained = m.Forward(x, r);                                      // needs grad: the atomic combine
        Tensor scored;
        using (no_grad()) scored = m.Forward(x, r);                         // no grad: the gather + bmm combine
        TensorAssert.Close(scored, trained, 1e-5, "auto strategy, both modes");
    }
}
