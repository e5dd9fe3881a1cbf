using Microsoft.ML.Qwen3Moe.Blocks;
using Microsoft.ML.Qwen3Moe.Kernels;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Kernels;

/// <summary>The TorchScript-reached ATen ops against plain TorchSharp ops, forward and backward, on the CPU.</summary>
public class AtenScriptTests
{
    [TestCase(ScalarType.Float32, 1e-6)]
    [TestCase(ScalarType.BFloat16, 2e-2)]
    public void RmsNormMatchesHfFormula(ScalarType dtype, double tol)
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var x = randn(6, 3, 64).to(dtype).requires_grad_();
        var weight = (1 + 0.1 * randn(64)).to(dtype).requires_grad_();
        var y = AtenScript.RmsNorm(x, weight, 1e-6);
        var gy = randn_like(y);
        y.backward(new[] { gy });
        var x2 = x.detach().clone().requires_grad_();
        var w2 = weight.detach().clone().requires_grad_();
        var xf = x2.to(ScalarType.Float32);
        var y2 = w2 * (xf * (xf.square().mean(new long[] { -1 }, keepdim: true) + 1e-6).rsqrt()).to(dtype);
        y2.backward(new[] { gy });
        TensorAssert.Close(y, y2, tol, "forward");
        TensorAssert.Close(x.grad!, x2.grad!, tol * 10, "dx");
        TensorAssert.Close(weight.grad!, w2.grad!, tol * 100, "dweight");
    }

    [Test]
    public void GroupedMmMatchesTheLoop()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var counts = new long[] { 4, 0, 8, 4 };
        var x = randn(counts.Sum(), 16).requires_grad_();
        var w = randn(4, 8, 16).requires_grad_();
        var offsets = tensor(counts).cumsum(0, ScalarType.Int32);
        var y = AtenScript.GroupedMm(x, w, offsets);
        var gy = randn_like(y);
        y.backward(new[] { gy });
        var x2 = x.detach().clone().requires_grad_();
        var w2 = w.detach().clone().requires_grad_();
        var y2 = GroupedMatmul.Loop(x2, w2, offsets);
        y2.backward(new[] { gy });
        TensorAssert.Close(y, y2, 1e-5, "forward");
        TensorAssert.Close(x.grad!, x2.grad!, 1e-5, "dx");
        TensorAssert.Close(w.grad!, w2.grad!, 1e-5, "dw");
    }

    /// <summary>SDPA with enable_gqa equals SDPA on K/V expanded to the query heads, causal and with a mask, forward and backward.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public void GqaAttentionMatchesExpandedHeads(bool masked)
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var q = randn(2, 8, 10, 16).requires_grad_();
        var k = randn(2, 2, 10, 16).requires_grad_();
        var v = randn(2, 2, 10, 16).requires_grad_();
        var mask = masked ? ones(10, 10, dtype: ScalarType.Bool).tril().unsqueeze(0).unsqueeze(0).expand(2, 1, 10, 10).clone() : null;
        if (mask is not null) mask[1, 0, 5, 2] = false;
        var fused = AtenScript.GqaAttention(q, k, v, mask);
        var gq = autograd.grad(new[] { fused.sum() }, new[] { q, k, v });
        var ke = k.unsqueeze(2).expand(2, 2, 4, 10, 16).reshape(2, 8, 10, 16);
        var ve = v.unsqueeze(2).expand(2, 2, 4, 10, 16).reshape(2, 8, 10, 16);
        var plain = mask is null ? nn.functional.scaled_dot_product_attention(q, ke, ve, is_casual: true)
            : nn.functional.scaled_dot_product_attention(q, ke, ve, attn_mask: mask);
        var gp = autograd.grad(new[] { plain.sum() }, new[] { q, k, v });
        TensorAssert.Close(fused, plain, 1e-5, "output");
        for (int i = 0; i < 3; i++) TensorAssert.Close(gq[i], gp[i], 1e-5, $"gradient {i}");
    }

    [Test]
    public void RotaryMatchesRotateHalf()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var rope = new RotaryEmbedding(16, 10000);
        var (cos, sin) = rope.Compute(arange(10).unsqueeze(0).expand(2, 10), ScalarType.Float32);  // [B,S,D]
        var q = randn(2, 10, 4, 16);
        var k = randn(2, 10, 2, 16);
        var (rq, rk) = RotaryEmbedding.Apply(q, k, cos, sin);
        Tensor Reference(Tensor x)
        {
            var h = x.chunk(2, -1);
            return x * cos.unsqueeze(2) + cat(new[] { -h[1], h[0] }, -1) * sin.unsqueeze(2);
        }
        TensorAssert.Close(rq, Reference(q), 1e-6, "q");
        TensorAssert.Close(rk, Reference(k), 1e-6, "k");
    }

    [TestCase(DeviceType.CUDA, ScalarType.BFloat16, 2048, 2048, 128, true)]
    [TestCase(DeviceType.CUDA, ScalarType.Float16, 7, 7, 64, true)]
    [TestCase(DeviceType.CUDA, ScalarType.BFloat16, 1, 2048, 128, false)]    // a decode step: flash aligns the causal mask differently
    [TestCase(DeviceType.CUDA, ScalarType.Float32, 2048, 2048, 128, false)]  // no float32 flash kernel
    [TestCase(DeviceType.CUDA, ScalarType.BFloat16, 2048, 2048, 100, false)] // head size not a multiple of 8
    [TestCase(DeviceType.CUDA, ScalarType.BFloat16, 2048, 2048, 512, false)] // head size above 256
    [TestCase(DeviceType.CPU, ScalarType.BFloat16, 2048, 2048, 128, false)]  // CUDA only
    public void FlashAttentionAppliesOnlyWhereTheKernelDoes(DeviceType device, ScalarType dtype, long queries, long keys, long headDim, bool applies) =>
        Assert.That(AtenScript.FlashAttentionApplies(device, dtype, queries, keys, headDim), Is.EqualTo(applies));

    [Test]
    public void CausalFlashAttentionCallsTheFlashKernel()
    {
        // the GPU path cannot run here; the script compiles against the op's schema, and libtorch names the op it dispatched
        using var scope = NewDisposeScope();
        var q = randn(1, 4, 8, 16, dtype: ScalarType.BFloat16);
        var kv = randn(1, 2, 8, 16, dtype: ScalarType.BFloat16);
        var e = Assert.Catch(() => AtenScript.CausalFlashAttention(q, kv, kv));
        Assert.That(e!.Message, Does.Contain("_scaled_dot_product_flash_attention").And.Contain("CPU"));
    }
}
