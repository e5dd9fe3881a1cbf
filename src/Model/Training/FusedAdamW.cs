using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>
/// AdamW (decoupled weight decay, PyTorch's update rule) as one multi-tensor kernel per (device, dtype) group:
/// <c>torch._fused_adamw_</c>, reached through TorchScript (TorchSharp 0.107 has no binding). TorchSharp's
/// <c>optim.AdamW</c> runs about ten kernels per parameter tensor, each a full pass over it; this reads parameter,
/// gradient and both moments once and writes them once. Moments take the parameter's dtype (like PyTorch), and the
/// step count is a float32 scalar per parameter on its device, so a step never waits for the device.
/// </summary>
public sealed class FusedAdamW : IDisposable
{
    private readonly Parameter[] _params;
    private readonly Tensor[] _expAvg, _expAvgSq, _steps;
    private readonly int[][] _groups;
    private readonly Scalar _beta1, _beta2, _eps, _weightDecay;   // owned for the optimizer's lifetime (see Scalars)

    /// <summary>Creates zero moments and step counts for <paramref name="parameters"/> (updated in place by <see cref="Step"/>).</summary>
    public FusedAdamW(IReadOnlyList<Parameter> parameters, double beta1, double beta2, double eps, double weightDecay)
    {
        _params = parameters.ToArray();
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = eps;
        WeightDecay = weightDecay;
        (_beta1, _beta2, _eps, _weightDecay) = (Scalars.Of(beta1), Scalars.Of(beta2), Scalars.Of(eps), Scalars.Of(weightDecay));
        using var _ = no_grad();
        _expAvg = _params.Select(p => zeros_like(p)).ToArray();
        _expAvgSq = _params.Select(p => zeros_like(p)).ToArray();
        _steps = _params.Select(p => zeros(Array.Empty<long>(), dtype: ScalarType.Float32, device: p.device)).ToArray();
        _groups = Enumerable.Range(0, _params.Length).GroupBy(i => (_params[i].device.ToString(), _params[i].dtype)).Select(g => g.ToArray()).ToArray();
    }

    /// <summary>AdamW beta1.</summary>
    public double Beta1 { get; }

    /// <summary>AdamW beta2.</summary>
    public double Beta2 { get; }

    /// <summary>AdamW epsilon.</summary>
    public double Epsilon { get; }

    /// <summary>Decoupled weight decay.</summary>
    public double WeightDecay { get; }

    /// <summary>The parameters, in the order the state lists follow.</summary>
    public IReadOnlyList<Parameter> Parameters => _params;

    /// <summary>First moments (one per parameter, the parameter's dtype and device).</summary>
    public IReadOnlyList<Tensor> ExpAvg => _expAvg;

    /// <summary>Second moments (one per parameter).</summary>
    public IReadOnlyList<Tensor> ExpAvgSq => _expAvgSq;

    /// <summary>Float32 scalar step count per parameter, on its device.</summary>
    public IReadOnlyList<Tensor> StepCounts => _steps;

    /// <summary>One update of every parameter that has a gradient, with learning rate <paramref name="learningRate"/>.</summary>
    public void Step(double learningRate)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var lr = Scalars.Of(learningRate);   // alive until every group's call returned
        foreach (var group in _groups)
        {
            var live = group.Select(i => (i, g: _params[i].grad)).Where(x => x.g is not null).ToArray();
            if (live.Length == 0) continue;
            AtenScript.FusedAdamW(
                live.Select(x => (Tensor)_params[x.i]).ToArray(), live.Select(x => x.g!).ToArray(),
                live.Select(x => _expAvg[x.i]).ToArray(), live.Select(x => _expAvgSq[x.i]).ToArray(), live.Select(x => _steps[x.i]).ToArray(),
                lr, _beta1, _beta2, _weightDecay, _eps);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in _expAvg.Concat(_expAvgSq).Concat(_steps)) t.Dispose();
        foreach (var s in new[] { _beta1, _beta2, _eps, _weightDecay }) s.Dispose();
    }
}
