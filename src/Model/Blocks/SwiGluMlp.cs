using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>Dense SwiGLU feed-forward: <c>down(silu(gate(x)) * up(x))</c>, used by the non-sparse layers.</summary>
internal sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
    public Linear gate_proj, up_proj, down_proj;

    public SwiGluMlp(int hidden, int intermediate, Device? device, ScalarType dtype) : base(nameof(SwiGluMlp))
    {
        gate_proj = nn.Linear(hidden, intermediate, false, device, dtype);
        up_proj = nn.Linear(hidden, intermediate, false, device, dtype);
        down_proj = nn.Linear(intermediate, hidden, false, device, dtype);
        RegisterComponents();
    }

    /// <summary>Late init: PyTorch's default linear init for the three projections.</summary>
    public void ResetParameters(ParameterInitializer init)
    {
        init.Linear(nameof(gate_proj), gate_proj);
        init.Linear(nameof(up_proj), up_proj);
        init.Linear(nameof(down_proj), down_proj);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(nn.functional.silu(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}
