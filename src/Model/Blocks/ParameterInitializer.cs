using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Random fills for late initialisation (the seed's <c>reset_parameters</c>). With a seed, each parameter draws from its
/// own generator seeded by (seed, full parameter name), so the values do not depend on how the model is split into
/// pipeline stages; without one, the global generator (<c>torch.manual_seed</c>) is used in module order.
/// </summary>
internal sealed class ParameterInitializer
{
    private readonly long? _seed;
    private readonly Dictionary<IntPtr, string> _names = new();

    /// <param name="root">The module whose parameter names seed the generators.</param>
    /// <param name="seed">Seed, or null for the global generator.</param>
    /// <param name="prefix">Prepended to <paramref name="root"/>'s names (the backbone uses "model." so that it draws what the causal LM draws).</param>
    public ParameterInitializer(nn.Module root, long? seed, string prefix = "")
    {
        _seed = seed;
        foreach (var (name, p) in root.named_parameters()) _names.TryAdd(p.Handle, prefix + name);
    }

    /// <summary>FNV-1a of the parameter name mixed with the seed: stable across runs, processes and stage layouts.</summary>
    public static ulong ParameterSeed(long seed, string name)
    {
        ulong h = 14695981039346656037UL ^ (ulong)seed;
        foreach (var c in name) h = (h ^ c) * 1099511628211UL;
        return h;
    }

    /// <summary>U(-bound, bound).</summary>
    public void Uniform(Parameter p, double bound) => Fill(p, g => p.uniform_(-bound, bound, g));

    /// <summary>N(0, std).</summary>
    public void Normal(Parameter p, double std) => Fill(p, g => p.normal_(0, std, g));

    /// <summary>PyTorch's default <c>nn.Linear</c> init: weight and bias U(-1/√in, 1/√in).</summary>
    public void Linear(Linear l)
    {
        double bound = 1 / Math.Sqrt(l.weight!.shape[1]);
        Uniform(l.weight!, bound);
        if (l.bias is not null) Uniform(l.bias, bound);
    }

    private void Fill(Parameter p, Action<Generator?> fill)
    {
        using var _ = no_grad();
        if (_seed is null)
        {
            fill(null);
            return;
        }
        var name = _names.TryGetValue(p.Handle, out var n) ? n : throw new InvalidOperationException("Parameter is not part of the module being reset.");
        using var gen = new Generator(ParameterSeed(_seed.Value, name), p.device);
        fill(gen);
    }
}
