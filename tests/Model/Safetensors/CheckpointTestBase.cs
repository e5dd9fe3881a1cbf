using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>Gives each checkpoint test a fresh temp folder, removed after the test.</summary>
public abstract class CheckpointTestBase
{
    private CheckpointTestFiles? _files;

    /// <summary>The current test's temp folder and helpers.</summary>
    internal CheckpointTestFiles Files => _files ?? throw new InvalidOperationException("Files is only available inside a test.");

    [SetUp]
    public void CreateTempFolder() => _files = new CheckpointTestFiles();

    [TearDown]
    public void DeleteTempFolder()
    {
        _files?.Dispose();
        _files = null;
    }
}
