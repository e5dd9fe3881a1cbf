using Microsoft.ML.Qwen3Moe.Autograd;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Autograd;

/// <summary>The gradients returned by the custom autograd functions (head, checkpointed layers) are not kept past the backward pass.</summary>
public class ReturnedGradientsTests
{
    [Test]
    public void ExecutorsReleaseThemWhenBackwardEnds()
    {
        using var scope = NewDisposeScope();
        using var model = new Qwen3MoeForCausalLM(Qwen3MoeForCausalLMTests.TinyParameters(), enableCheckpointing: true);
        model.InitializeWeights(2);
        var ids = randint(0, 50, new long[] { 2, 8 }, dtype: ScalarType.Int64);
        var batch = new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) };

        using (var o = model.forward(batch)) o.TokenNll!.sum().backward(); // a caller's own backward: the handles stay until the next one
        Assert.That(ReturnedGradients.HeldCount, Is.GreaterThan(0), "the head and the checkpointed layers returned gradients");

        using var executor = new SingleStageExecutor(model);
        executor.ForwardBackward(batch, 14, 0);
        Assert.That(ReturnedGradients.HeldCount, Is.EqualTo(0), "released as soon as the executor's backward ended");
    }
}
