using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Kernels;

/// <summary>Kernel choices belong to a model (passed at construction), not to the process.</summary>
public class KernelOptionsTests
{
    [Test]
    public void TwoModelsInOneProcessKeepTheirOwnKernelsAndAgree()
    {
        using var scope = NewDisposeScope();
        var p = Qwen3MoeForCausalLMTests.TinyParameters(); // 4 query heads over 2 K/V heads: the GQA path is taken
        var alternative = new KernelOptions
        {
            FusedRmsNorm = false, GroupedQueryAttention = false, FlashAttention = false, ExpertPermutation = ExpertPermutation.IndexAdd,
        };
        using var fastest = new Qwen3MoeForCausalLM(p);
        using var other = new Qwen3MoeForCausalLM(p, kernels: alternative);
        fastest.InitializeWeights(7);
        other.InitializeWeights(7);
        Assert.That(fastest.Model.Kernels, Is.EqualTo(KernelOptions.Default));
        Assert.That(other.Model.Kernels, Is.EqualTo(alternative));
        Assert.That(KernelOptions.Default,
            Is.EqualTo(new KernelOptions
            {
                FusedRmsNorm = true, GroupedQueryAttention = true, FlashAttention = true, ExpertPermutation = ExpertPermutation.Auto,
                ScriptedDecode = true, DecodeGatherPairs = 16,
            }),
            "defaults: the fastest measured choices");
        manual_seed(3);
        var ids = randint(0, 50, new long[] { 2, 9 });
        using var _ = no_grad();
        using var a = fastest.forward(new CausalLMBatch { InputIds = ids, ReturnLogits = true });
        using var b = other.forward(new CausalLMBatch { InputIds = ids, ReturnLogits = true });
        TensorAssert.Close(a.Logits!, b.Logits!, 1e-5, "fused/GQA/gather kernels vs op-by-op/expanded/index_add (fp32: summation order only)");
    }

    /// <summary>
    /// The loss head's kernel choices (kept logits and a fused logit gradient by default; recomputed logits and ATen ops
    /// otherwise) give the same losses and gradients in float32: the same formula in another order.
    /// </summary>
    [Test]
    public void LossHeadKernelsGiveTheSameGradients()
    {
        using var scope = NewDisposeScope();
        var p = Qwen3MoeForCausalLMTests.TinyParameters();
        var alternative = new KernelOptions { LossLogitsBudgetBytes = 0, FusedLossGradient = false };
        using var fastest = new Qwen3MoeForCausalLM(p);
        using var other = new Qwen3MoeForCausalLM(p, kernels: alternative);
        fastest.InitializeWeights(7);
        other.InitializeWeights(7);
        Assert.That(KernelOptions.Default.LossLogitsBudgetBytes, Is.EqualTo(2L << 30), "default: logits up to 2 GiB are kept");
        Assert.That(KernelOptions.Default.FusedLossGradient, Is.True);
        manual_seed(4);
        var ids = randint(0, 50, new long[] { 2, 9 });
        var batch = new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };
        using var a = fastest.forward(batch);
        using var b = other.forward(batch);
        TensorAssert.Close(a.TokenNll!, b.TokenNll!, 1e-6, "per-token NLL");
        a.TokenNll!.sum().backward();
        b.TokenNll!.sum().backward();
        foreach (var ((name, x), (_, y)) in fastest.named_parameters().Zip(other.named_parameters()))
        {
            if (y.grad is null) Assert.That(x.grad, Is.Null, name);
            else TensorAssert.RelativeToMax(x.grad!, y.grad, 1e-5, $"gradient of {name}");
        }
    }
}
