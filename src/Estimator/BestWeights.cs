using Microsoft.ML.Qwen3Moe.Execution;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// A CPU copy of the stages' weights at the lowest validation loss so far (<see cref="Qwen3MoeEstimator.Options.KeepBestByValidationLoss"/>),
/// put back into the model when the fit ends. Holds one copy of the weights in host memory.
/// </summary>
internal sealed class BestWeights : IDisposable
{
    private List<Dictionary<string, Tensor>>? _weights;

    /// <summary>Lowest validation loss seen, or +∞.</summary>
    public double Loss { get; private set; } = double.PositiveInfinity;

    /// <summary>Optimizer steps done at the best validation.</summary>
    public int Step { get; private set; }

    /// <summary>Keeps a copy of the weights when <paramref name="loss"/> is the lowest so far; returns whether it was.</summary>
    public bool Offer(IStepExecutor executor, double loss, int step)
    {
        if (!(loss < Loss)) return false;
        Dispose();
        using var scope = NewDisposeScope();
        using (no_grad())
            _weights = executor.Stages.Select(s => Kept(s).ToDictionary(kv => kv.Key,
                kv => kv.Value.detach().cpu().clone().DetachFromDisposeScope())).ToList();
        Loss = loss;
        Step = step;
        return true;
    }

    /// <summary>Copies the kept weights back into the stages (no-op when none were kept).</summary>
    public void Restore(IStepExecutor executor)
    {
        if (_weights is null) return;
        using var _ = no_grad();
        for (int i = 0; i < executor.Stages.Count; i++)
            foreach (var (name, live) in Kept(executor.Stages[i]))
                live.copy_(_weights[i][name]);
    }

    /// <summary>Every tensor of the stage's state; with LoRA adapters only the trained ones (the frozen base does not change).</summary>
    private static IEnumerable<KeyValuePair<string, Tensor>> Kept(Qwen3MoeForCausalLM stage) =>
        stage.state_dict().Where(kv => stage.Lora is null || stage.Lora.TrainableNames.Contains(kv.Key));

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in _weights?.SelectMany(w => w.Values) ?? Enumerable.Empty<Tensor>()) t.Dispose();
        _weights = null;
    }
}
