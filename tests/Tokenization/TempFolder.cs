using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>Fresh folders under the test's work directory.</summary>
internal static class TempFolder
{
    public static string Create()
    {
        string path = Path.Combine(TestContext.CurrentContext.WorkDirectory, "tokenizer-tmp", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }
}
