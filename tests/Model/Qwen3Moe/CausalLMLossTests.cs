using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

public class CausalLMLossTests
{
    /// <summary>
    /// Regression: <c>t.sum(0)</c> binds to TorchSharp's <c>sum(ScalarType?)</c> overload (the literal 0 converts to
    /// <c>ScalarType.Byte</c>), which summed the masked statistics as bytes: wrong without autograd, an exception with it.
    /// </summary>
    [Test]
    public void MaskedAuxiliaryLossEqualsTheLossOfTheRealTokensAndHasAGradient()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var logits = new[] { randn(2 * 6, 4).requires_grad_(true), randn(2 * 6, 4).requires_grad_(true) }; // two layers, B=2, S=6, E=4
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }).reshape(2, 6);
        var real = mask.reshape(-1).nonzero().squeeze(1);
        var masked = CausalLMLoss.AuxiliaryLoss(logits, 2, mask);
        var expected = CausalLMLoss.AuxiliaryLoss(logits.Select(l => l.index_select(0, real)).ToArray(), 2);
        Assert.That(masked.dtype, Is.EqualTo(ScalarType.Float32));
        TensorAssert.RelativelyClose(masked.item<float>(), expected.item<float>(), 1e-6, "masked vs real-token auxiliary loss");
        masked.backward();
        Assert.That(logits[0].grad, Is.Not.Null);
        Assert.That(logits[0].grad!.isfinite().all().item<bool>(), Is.True);
    }

    [Test]
    public void ObjectiveWeighsEveryTargetTokenOfTheStepAndAddsTheAuxiliaryTermOnlyWhenTrained()
    {
        using var scope = NewDisposeScope();
        var nll = tensor(6f);
        var aux = tensor(2f);
        Assert.That(CausalLMLoss.Objective(nll, 3, aux, 0.5).item<float>(), Is.EqualTo(3f), "6 / 3 + 0.5 * 2");
        Assert.That(CausalLMLoss.Objective(nll, 3, aux, 0).item<float>(), Is.EqualTo(2f), "coefficient 0: no auxiliary term");
        Assert.That(CausalLMLoss.Objective(nll, 0, null, 0.5).item<float>(), Is.EqualTo(6f), "no target tokens: divide by 1, never NaN");
    }

    [Test]
    public void IgnoreIndexIsHuggingFaces() => Assert.That(CausalLMLoss.IgnoreIndex, Is.EqualTo(-100));
}
