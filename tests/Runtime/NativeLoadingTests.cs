using NUnit.Framework;
using TorchSharp;

namespace Microsoft.ML.Qwen3Moe.Tests.Runtime;

/// <summary>The build makes TorchSharp's native bridge loadable on this machine (see Directory.Build.targets).</summary>
public class NativeLoadingTests
{
    [Test]
    public void LibTorchLoadsAndComputes()
    {
        using var a = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        using var s = a.sum();
        Assert.That(s.item<float>(), Is.EqualTo(15f));
    }
}
