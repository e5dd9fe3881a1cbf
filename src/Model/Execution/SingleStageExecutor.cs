using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>Runs a whole (single-stage) model on its device.</summary>
public sealed class SingleStageExecutor : IStepExecutor
{
    private readonly Qwen3MoeForCausalLM _model;

    /// <summary>Wraps <paramref name="model"/>, which must own every layer (one pipeline stage). The executor does not dispose it.</summary>
    public SingleStageExecutor(Qwen3MoeForCausalLM model)
    {
        if (!model.Stage.IsFirst || !model.Stage.IsLast) throw new
            ArgumentException("SingleStageExecutor needs a model built as a single stage.", nameof(model));
        _model = model;
    }

    /// <inheritdoc />
    public IReadOnlyList<Qwen3MoeForCausalLM> Stages => new[] { _model };

    /// <inheritdoc />
    public StepSums ForwardBackward(CausalLMBatch batch, long targetTokens, double auxCoefficient)
    {
        if (batch.Labels is null) throw new ArgumentException("Training needs labels.", nameof(batch));
        CausalLMBatchCheck.Validate(batch, _model.Parameters.Model.VocabSize);
        using var scope = NewDisposeScope();
        var moved = batch.Map(t => t.to(_model.Device));
        using var o = _model.forward(moved);
        var nll = o.TokenNll!.sum();
        Tensor aux;
        using (auxCoefficient == 0 ? no_grad() : null) // reported either way; differentiated only when it is trained
            aux = CausalLMLoss.AuxiliaryLoss(o.RouterLogits, _model.Parameters.Model.Layer.ExpertsTopK, moved.AttentionMask).to(nll.device);
        CausalLMLoss.Objective(nll, targetTokens, o.RouterLogits.Count > 0 ? aux : null, auxCoefficient).backward();
        Autograd.ReturnedGradients.ReleaseAll();
        return new StepSums(nll.detach().MoveToOuterDisposeScope(), aux.detach().MoveToOuterDisposeScope());
    }

    /// <inheritdoc />
    public Tensor Score(CausalLMBatch batch)
    {
        if (batch.Labels is null) throw new ArgumentException("Scoring needs labels (the next-token targets).", nameof(batch));
        using var scope = NewDisposeScope();
        CausalLMBatchCheck.Validate(batch, _model.Parameters.Model.VocabSize);
        using var _ = no_grad();
        using var o = _model.forward(batch.Map(t => t.to(_model.Device)));
        return o.TokenNll!.alias().MoveToOuterDisposeScope(); // the output's Dispose releases its own handle
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
