using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>Hostile tokenizer files: ids beyond what the file can describe, invalid UTF-8; every error names the file.</summary>
public class TokenizerFileBoundsTests
{
    private static string Write(JsonObject json, string name = "tokenizer.json")
    {
        string path = Path.Combine(TempFolder.Create(), name);
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    [TestCase(500_000_000)]
    [TestCase(int.MaxValue)]
    public void AVocabIdBeyondTheFilesSizeIsRejectedNamingTheFile(int id)
    {
        JsonObject json = Qwen3TokenizerLoadingTests.MiniTokenizerJson();
        json["model"]!["vocab"]!["zz"] = id;
        string path = Write(json);
        var e = Assert.Throws<InvalidDataException>(() => Qwen3Tokenizer.FromTokenizerJson(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain(id.ToString("N0")).And.Contain("'zz'"));
    }

    [Test]
    public void AnAddedTokenIdBeyondTheFilesSizeIsRejectedNamingTheFile()
    {
        JsonObject json = Qwen3TokenizerLoadingTests.MiniTokenizerJson();
        json["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = 400_000_000, ["content"] = "<big>", ["special"] = true });
        string path = Write(json);
        var e = Assert.Throws<InvalidDataException>(() => Qwen3Tokenizer.FromTokenizerJson(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("<big>"));
    }

    [Test]
    public void InvalidUtf8InTokenizerJsonNamesTheFile()
    {
        string path = Write(Qwen3TokenizerLoadingTests.MiniTokenizerJson());
        byte[] bytes = File.ReadAllBytes(path);
        int at = Encoding.UTF8.GetString(bytes).IndexOf("<think>", StringComparison.Ordinal) + 1;
        bytes[at] = 0xFF; // inside a JSON string: the parser itself accepts it, and transcodes it lazily
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => Qwen3Tokenizer.FromTokenizerJson(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("UTF-8"));
    }

    [Test]
    public void InvalidUtf8InMergesNamesTheFile()
    {
        string folder = TempFolder.Create();
        JsonObject mini = Qwen3TokenizerLoadingTests.MiniTokenizerJson();
        File.WriteAllText(Path.Combine(folder, "vocab.json"), mini["model"]!["vocab"]!.ToJsonString());
        string merges = Path.Combine(folder, "merges.txt");
        File.WriteAllBytes(merges, [.. "#version: 0.2\nh e\n"u8, 0xC3, 0x28, (byte)' ', (byte)'x', (byte)'\n']);
        var e = Assert.Throws<InvalidDataException>(() => Qwen3Tokenizer.FromVocabAndMerges(Path.Combine(folder, "vocab.json"), merges))!;
        Assert.That(e.Message, Does.Contain(merges).And.Contain("UTF-8"));
    }
}
