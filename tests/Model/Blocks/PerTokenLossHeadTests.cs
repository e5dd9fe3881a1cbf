using Microsoft.ML.Qwen3Moe.Autograd;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Blocks;

/// <summary>The LM head's per-token NLL (<see cref="ChunkedLinearCrossEntropy"/>): values, gradients and bounded memory.</summary>
public class PerTokenLossHeadTests
{
    /// <summary>Plain autograd reference: full logits, log-softmax, pick the label.</summary>
    private static Tensor PlainNll(Tensor h, IReadOnlyList<Tensor> weights, Tensor labels)
    {
        var logits = cat(weights.Select(w => nn.functional.linear(h, w)).ToArray(), 1).to(ScalarType.Float32);  // [N,V]
        var logp = logits.log_softmax(1);
        var picked = -logp.gather(1, labels.clamp_min(0).unsqueeze(1)).squeeze(1);
        return picked * labels.ne(CausalLMLoss.IgnoreIndex);
    }

    private static (Tensor H, Tensor[] W, Tensor Labels) Inputs(long n, long hidden, long[] vocab, long seed)
    {
        manual_seed(seed);
        var h = randn(n, hidden).requires_grad_(true);
        var w = vocab.Select(v => (randn(v, hidden) * 0.3).requires_grad_(true)).ToArray();
        var labels = randint(0, vocab.Sum(), new[] { n }, dtype: ScalarType.Int64);
        labels[TensorIndex.Slice(0, n, 5)] = tensor(CausalLMLoss.IgnoreIndex);
        return (h, w, labels);
    }

    [TestCase(30, 7, false, false)]
    [TestCase(30, 30, false, false)]
    [TestCase(30, 1024, false, false)]
    [TestCase(30, 7, true, false)]
    [TestCase(30, 7, false, true)]
    [TestCase(30, 7, true, true)]
    [TestCase(30, 1024, true, true)]
    public void ValuesAndGradientsEqualPlainAutograd(int tokens, int chunk, bool keepLogits, bool fusedGradient)
    {
        using var scope = NewDisposeScope();
        var (h, w, labels) = Inputs(tokens, 16, new long[] { 40, 9 }, 1);
        var plain = PlainNll(h, w, labels);
        var weights = randn(tokens);                                    // a non-uniform upstream gradient, negative entries too
        var gPlain = autograd.grad(new[] { (plain * weights).sum() }, new[] { h }.Concat(w).ToArray());
        var chunked = ChunkedLinearCrossEntropy.Apply(h, w, labels, new ChunkedLinearCrossEntropy.Settings(chunk, keepLogits, fusedGradient));
        TensorAssert.Close(chunked, plain, 1e-5, "per-token NLL");
        Assert.That(chunked.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(chunked[0].item<float>(), Is.EqualTo(0f), "ignored position");
        var gChunked = autograd.grad(new[] { (chunked * weights).sum() }, new[] { h }.Concat(w).ToArray());
        string[] names = { "hidden", "weight of split 0", "weight of split 1" };
        for (int i = 0; i < names.Length; i++) TensorAssert.RelativeToMax(gChunked[i], gPlain[i], 1e-5, names[i]);
    }

    [Test]
    public void FrozenWeightsGetNoGradient()
    {
        using var scope = NewDisposeScope();
        var (h, w, labels) = Inputs(12, 8, new long[] { 20, 5 }, 2);
        w[0].requires_grad_(false);
        ChunkedLinearCrossEntropy.Apply(h, w, labels, 5).sum().backward();
        Assert.That(w[0].grad, Is.Null);
        Assert.That(w[1].grad, Is.Not.Null);
        Assert.That(h.grad, Is.Not.Null);
    }

    [Test]
    public void Bfloat16ActivationsGiveFloat32LossesAndActivationDtypeGradients()
    {
        using var scope = NewDisposeScope();
        var (h, w, labels) = Inputs(10, 8, new long[] { 30 }, 3);
        var hb = h.detach().to(ScalarType.BFloat16).requires_grad_(true);
        var wb = w[0].detach().to(ScalarType.BFloat16).requires_grad_(true);
        var nll = ChunkedLinearCrossEntropy.Apply(hb, new[] { wb }, labels, 4);
        Assert.That(nll.dtype, Is.EqualTo(ScalarType.Float32));
        TensorAssert.Close(nll, PlainNll(hb, new[] { wb }, labels), 1e-5, "same numerics as the plain bf16 head");
        nll.sum().backward();
        Assert.That(hb.grad!.dtype, Is.EqualTo(ScalarType.BFloat16));
        Assert.That(wb.grad!.dtype, Is.EqualTo(ScalarType.BFloat16));
    }

    /// <summary>
    /// The logit gradient of one chunk, fused script (run op by op on the CPU) and ATen ops alike, equals
    /// <c>(softmax − onehot) · upstream</c> from plain autograd, with one rounding to bf16: within 2^-8 of the largest entry.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void LogitGradientIsSoftmaxMinusOneHotTimesUpstream(bool fused)
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var logits = (randn(6, 50) * 3).to(ScalarType.BFloat16);
        var labels = tensor(new long[] { 3, CausalLMLoss.IgnoreIndex, 0, 49, 7, 7 });
        var upstream = tensor(new[] { 0.5f, 2f, -1f, 0.25f, 1f, 3f }) * labels.ne(CausalLMLoss.IgnoreIndex);
        var lse = logits.to(ScalarType.Float32).logsumexp(1);
        var x = logits.to(ScalarType.Float64).requires_grad_(true);
        var nll = -x.log_softmax(1).gather(1, labels.clamp_min(0).unsqueeze(1)).squeeze(1);
        var expected = autograd.grad(new[] { (nll * upstream.to(ScalarType.Float64)).sum() }, new[] { x })[0];
        var g = ChunkedLinearCrossEntropy.LogitGradient(logits, lse, upstream, labels, fused);
        Assert.That(g.dtype, Is.EqualTo(ScalarType.BFloat16));
        TensorAssert.RelativeToMax(g, expected, 1.0 / 256, "logit gradient");
        Assert.That(g[1].abs().max().to(ScalarType.Float32).item<float>(), Is.EqualTo(0f), "an ignored row has no gradient");
    }

    /// <summary>
    /// Scoring (no gradient) never keeps the logits, whatever the settings: its peak stays well below the [N,V] logits; a
    /// differentiable call with <see cref="ChunkedLinearCrossEntropy.Settings.KeepLogits"/> does keep all [N,V] of them.
    /// </summary>
    [Test]
    public void LogitsAreKeptOnlyWhenAGradientWillBeNeeded()
    {
        const long n = 1024, hidden = 64, vocab = 16384, chunk = 64;
        using var scope = NewDisposeScope();
        var (h, w, labels) = Inputs(n, hidden, new[] { vocab }, 4);
        var keep = new ChunkedLinearCrossEntropy.Settings(chunk, KeepLogits: true);
        long scoring = PeakMemory.Measure(() =>
        {
            using var inner = NewDisposeScope();
            using var _ = no_grad();
            ChunkedLinearCrossEntropy.Apply(h, w, labels, keep);
        });
        long training = PeakMemory.Measure(() =>
        {
            using var inner = NewDisposeScope();
            ChunkedLinearCrossEntropy.Apply(h, w, labels, keep).sum().backward();
            h.grad = null;
            w[0].grad = null;
        });
        long fullLogits = n * vocab * 4;                                  // 67 MB
        TestContext.Out.WriteLine($"peak growth: scoring {scoring / 1e6:F1} MB, training {training / 1e6:F1} MB, [N,V] float32 {fullLogits / 1e6:F1} MB");
        Assert.That(scoring, Is.LessThan(fullLogits / 2), "scoring: chunk buffers only (measured 26 MB), never the [N,V] logits");
        Assert.That(training, Is.GreaterThanOrEqualTo(fullLogits), "training keeps the [N,V] logits");
    }

    /// <summary>
    /// Working memory of forward + backward is about 3 float32 [chunk, V] buffers plus the weight gradient, whatever the
    /// number of tokens, while plain autograd keeps [N, V] logits and log-probabilities. Vocabulary 16,384 and 1,024 tokens
    /// stand in for 151,936 x 8k (same formula, affordable on CI).
    /// </summary>
    [Test]
    public void PeakMemoryIsBoundedByTheChunkNotByTheTokens()
    {
        const long n = 1024, hidden = 64, vocab = 16384, chunk = 64;
        using var scope = NewDisposeScope();
        var (h, w, labels) = Inputs(n, hidden, new[] { vocab }, 4);
        long Run(bool chunked) => PeakMemory.Measure(() =>
        {
            using var inner = NewDisposeScope();
            var nll = chunked ? ChunkedLinearCrossEntropy.Apply(h, w, labels, chunk) : PlainNll(h, w, labels);
            nll.sum().backward();
            h.grad = null;
            w[0].grad = null;
        });
        long bounded = Run(chunked: true), plain = Run(chunked: false);
        long formula = 3 * chunk * vocab * 4 + vocab * hidden * 4;        // chunk buffers + weight gradient: 16.8 MB
        long fullLogits = n * vocab * 4;                                  // 67 MB
        TestContext.Out.WriteLine($"peak growth: chunked {bounded / 1e6:F1} MB (formula {formula / 1e6:F1} MB), plain {plain / 1e6:F1} MB (one [N,V] " +
            $"float32 = {fullLogits / 1e6:F1} MB)");
        Assert.That(plain, Is.GreaterThan(2 * fullLogits), "plain autograd keeps at least logits and log-probabilities");
        Assert.That(bounded, Is.LessThan(formula + 8_000_000), "chunked head stays within its formula (+8 MB noise)");
    }
}
