using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Blocks;

/// <summary>
/// Random fills for late initialisation (the seed's <c>reset_parameters</c>). With a seed, each parameter draws from its
/// own generator seeded by (seed, full parameter name), so the values do not depend on how the model is split into
/// pipeline stages; without one, the global generator (<c>torch.manual_seed</c>) is used in module order. Modules name
/// their parameters as registered; <see cref="Scope"/> prefixes a child module's name.
/// </summary>
internal sealed class ParameterInitializer
{
    private readonly long? _seed;
    private readonly string _prefix;
    private readonly HashSet<string> _known;

    /// <param name="root">The module being reset; its parameter names are checked against the names modules give.</param>
    /// <param name="seed">Seed, or null for the global generator.</param>
    /// <param name="prefix">Name of <paramref name="root"/> in the causal LM ("model." for the backbone), so a backbone draws what the causal LM draws.</param>
    public ParameterInitializer(nn.Module root, long? seed, string prefix = "")
        : this(seed, prefix, root.named_parameters().Select(np => prefix + np.name).ToHashSet(StringComparer.Ordinal))
    {
    }

    private ParameterInitializer(long? seed, string prefix, HashSet<string> known) => (_seed, _prefix, _known) = (seed, prefix, known);

    /// <summary>FNV-1a of the parameter name mixed with the seed: stable across runs, processes and stage layouts.</summary>
    public static ulong ParameterSeed(long seed, string name)
    {
        ulong h = 14695981039346656037UL ^ (ulong)seed;
        foreach (var c in name) h = (h ^ c) * 1099511628211UL;
        return h;
    }

    /// <summary>The initializer of the child module registered as <paramref name="child"/>.</summary>
    public ParameterInitializer Scope(string child) => new(_seed, _prefix + child + ".", _known);

    /// <summary>U(-bound, bound) into the parameter registered as <paramref name="name"/>.</summary>
    public void Uniform(string name, Parameter p, double bound) => Fill(name, p, g => p.uniform_(-bound, bound, g));

    /// <summary>N(0, std) into the parameter registered as <paramref name="name"/>.</summary>
    public void Normal(string name, Parameter p, double std) => Fill(name, p, g => p.normal_(0, std, g));

    /// <summary>PyTorch's default <c>nn.Linear</c> init of the child <paramref name="name"/>: weight and bias U(-1/√in, 1/√in).</summary>
    public void Linear(string name, Linear l)
    {
        double bound = 1 / Math.Sqrt(l.weight!.shape[1]);
        Uniform(name + ".weight", l.weight!, bound);
        if (l.bias is not null) Uniform(name + ".bias", l.bias, bound);
    }

    private void Fill(string name, Parameter p, Action<Generator?> fill)
    {
        var full = _prefix + name;
        if (!_known.Contains(full)) throw new InvalidOperationException($"'{full}' is not a parameter of the module being reset.");
        using var _ = no_grad();
        if (_seed is null)
        {
            fill(null);
            return;
        }
        Seeded(_seed.Value, full, p.device, fill);
    }

    /// <summary>
    /// Runs <paramref name="fill"/> with randomness keyed by (seed, name). On the CPU: a generator of its own. On CUDA,
    /// TorchSharp 0.107 only creates CPU generators (a CPU generator on a CUDA tensor is an error), and drawing on the CPU
    /// then copying would cost minutes and host memory for a 30 B model, so the devices' default generators are reseeded
    /// instead (same values on every CUDA device, so pipeline splits still agree; CUDA values differ from CPU ones).
    /// </summary>
    public static void Seeded(long seed, string name, Device device, Action<Generator?> fill)
    {
        if (device.type == DeviceType.CPU)
        {
            using var gen = new Generator(ParameterSeed(seed, name), device);
            fill(gen);
            return;
        }
        cuda.manual_seed_all(unchecked((long)ParameterSeed(seed, name)));
        fill(null);
    }
}
