using System.Text.Json.Nodes;
using System.Text.Json;
using System.Text;
using Microsoft.ML.Qwen3Moe.Tokenization;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Tokenization;

/// <summary>Loading from tokenizer.json, from vocab.json + merges.txt, and clear errors for bad files.</summary>
[TestFixture]
public class Qwen3TokenizerLoadingTests
{
    private static string? s_vocabFolder;

    /// <summary>vocab.json + merges.txt + tokenizer_config.json derived from the fixture's tokenizer.json, as the hub ships them.</summary>
    private static string VocabFolder => s_vocabFolder ??= WriteVocabAndMerges();

    [Test]
    public void VocabAndMergesGiveTheSameIdsAsTokenizerJson()
    {
        string folder = VocabFolder;
        Qwen3Tokenizer fromVocab = Qwen3Tokenizer.FromVocabAndMerges(
            Path.Combine(folder, "vocab.json"), Path.Combine(folder, "merges.txt"), Path.Combine(folder, "tokenizer_config.json"));
        Qwen3Tokenizer fromFolder = Qwen3Tokenizer.FromFolder(folder); // no tokenizer.json there
        foreach (EncodingCase c in TokenizerFixtures.EncodingCases().Select(d => (EncodingCase)d.Arguments[0]!))
        {
            Assert.That(fromVocab.Encode(c.Text), Is.EqualTo(c.Ids), c.Text);
            Assert.That(fromFolder.Decode(c.Ids), Is.EqualTo(c.Decoded), c.Text);
        }

        Assert.That(fromVocab.VocabularySize, Is.EqualTo(TokenizerFixtures.Tokenizer.VocabularySize));
        Assert.That(fromVocab.PadTokenId, Is.EqualTo(151_643));
    }

    [Test]
    public void VocabAndMergesWithoutConfigNameTheMissingAddedTokens()
    {
        string folder = VocabFolder;
        var e = Assert.Throws<InvalidDataException>(() =>
            Qwen3Tokenizer.FromVocabAndMerges(Path.Combine(folder, "vocab.json"), Path.Combine(folder, "merges.txt")));
        Assert.That(e!.Message, Does.Contain("<|endoftext|>").And.Contain("tokenizer_config.json"));
    }

    [Test]
    public void FolderWithoutTokenizerFilesIsReported()
    {
        Assert.Throws<FileNotFoundException>(() => Qwen3Tokenizer.FromFolder(TempFolder.Create()));
        Assert.Throws<DirectoryNotFoundException>(() => Qwen3Tokenizer.FromFolder(Path.Combine(TempFolder.Create(), "missing")));
    }

    [Test]
    public void MiniatureTokenizerJsonLoadsAndEncodes()
    {
        Qwen3Tokenizer tokenizer = Load(MiniTokenizerJson());
        Assert.That(tokenizer.Encode("hello<think>"), Is.EqualTo(new[] { 256, 257, 'o' - '!', 260 }));
        Assert.That(tokenizer.Decode(tokenizer.Encode("hello<think> wörld")), Is.EqualTo("hello<think> wörld"));
        Assert.That(tokenizer.PadTokenId, Is.EqualTo(258));
        Assert.That(tokenizer.EosTokenId, Is.EqualTo(259));
    }

    private static IEnumerable<TestCaseData> Malformed()
    {
        TestCaseData Case(string name, Action<JsonObject> change, Type exception, string message) =>
            new TestCaseData(change, exception, message).SetName($"Malformed({name})");

        yield return Case("no model", j => j.Remove("model"), typeof(InvalidDataException), "'model' is missing");
        yield return Case("model not BPE", j => j["model"]!["type"] = "WordPiece", typeof(NotSupportedException), "model.type is 'WordPiece'");
        yield return Case("no vocab", j => j["model"]!.AsObject().Remove("vocab"), typeof(InvalidDataException), "'model.vocab' is missing");
        yield return Case("vocab id not a number", j => j["model"]!["vocab"]!["he"] = "x", typeof(InvalidDataException), "model.vocab[\"he\"]");
        yield return Case("merges not an array", j => j["model"]!["merges"] = 5, typeof(InvalidDataException), "'model.merges' must be a JSON array");
        yield return Case("merge with three parts", j => j["model"]!["merges"]![0] = "h e l", typeof(InvalidDataException), "model.merges[0]");
        yield return Case("merge of unknown tokens", j => j["model"]!["merges"]!.AsArray().Add("q z"), typeof(InvalidDataException),
            "rejected by Microsoft.ML.Tokenizers");
        yield return Case("dropout", j => j["model"]!["dropout"] = 0.1, typeof(NotSupportedException), "dropout");
        yield return Case("no normalizer", j => j["normalizer"] = null, typeof(NotSupportedException), "normalizer");
        yield return Case("other split pattern", j => j["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = @"\s+", typeof(NotSupportedException),
            "pretokenizers[0]");
        yield return Case("added token without id", j => j["added_tokens"]![0]!.AsObject().Remove("id"), typeof(InvalidDataException),
            "added_tokens[0].id' is missing");
        yield return Case("added token lstrip", j => j["added_tokens"]![1]!["lstrip"] = true, typeof(NotSupportedException), "lstrip");
        yield return Case("two added tokens, one id", j => j["added_tokens"]![1]!["id"] = 258, typeof(InvalidDataException), "added token id 258");
        yield return Case("non byte-level vocab", j => j["model"]!["vocab"]!["日本"] = 300, typeof(InvalidDataException), "byte-level alphabet");
    }

    [TestCaseSource(nameof(Malformed))]
    public void MalformedTokenizerJsonNamesWhatIsWrong(Action<JsonObject> change, Type exception, string message)
    {
        JsonObject json = MiniTokenizerJson();
        change(json);
        Exception e = Assert.Catch(() => Load(json))!;
        Assert.That(e, Is.TypeOf(exception));
        Assert.That(e.Message, Does.Contain(message));
    }

    [Test]
    public void InvalidJsonIsReportedWithTheFileName()
    {
        string path = Path.Combine(TempFolder.Create(), "tokenizer.json");
        File.WriteAllText(path, "{\"model\": {\"vocab\": ");
        var e = Assert.Throws<InvalidDataException>(() => Qwen3Tokenizer.FromTokenizerJson(path));
        Assert.That(e!.Message, Does.Contain(path).And.Contain("not valid JSON"));
    }

    [Test]
    public void MalformedMergesTxtNamesTheLine()
    {
        string folder = TempFolder.Create();
        File.WriteAllText(Path.Combine(folder, "vocab.json"), """{"a": 0, "b": 1, "ab": 2}""");
        File.WriteAllText(Path.Combine(folder, "merges.txt"), "#version: 0.2\na b\nab\n");
        var e = Assert.Throws<InvalidDataException>(() => Qwen3Tokenizer.FromFolder(folder));
        Assert.That(e!.Message, Does.Contain("line 3"));
    }

    /// <summary>A small but complete Qwen-style tokenizer.json: the 256 byte tokens, two merges, three added tokens.</summary>
    internal static JsonObject MiniTokenizerJson()
    {
        var vocab = new JsonObject();
        // The 256 byte tokens, with ids in the order of their characters, so that '!' is 0 and 'o' is 'o' - '!'.
        int id = 0;
        foreach (string c in Enumerable.Range(0, 256).Select(b => ByteLevelAlphabet.ToChar((byte)b).ToString()).Order(StringComparer.Ordinal))
        {
            vocab[c] = id++;
        }

        vocab["he"] = 256;
        vocab["ll"] = 257;
        JsonObject Added(int tokenId, string content, bool special) => new()
        {
            ["id"] = tokenId, ["content"] = content, ["single_word"] = false, ["lstrip"] = false,
            ["rstrip"] = false, ["normalized"] = false, ["special"] = special,
        };

        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Added(258, "<|endoftext|>", true), Added(259, "<|im_end|>", true), Added(260, "<think>", false)),
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = Qwen2PreTokenizer.Pattern },
                        ["behavior"] = "Isolated", ["invert"] = false,
                    },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = new JsonArray(new JsonArray("h", "e"), "l l"),
            },
        };
    }

    private static Qwen3Tokenizer Load(JsonObject json) =>
        Qwen3Tokenizer.FromTokenizerJson(new MemoryStream(Encoding.UTF8.GetBytes(json.ToJsonString())));

    private static string WriteVocabAndMerges()
    {
        string folder = TempFolder.Create();
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(TokenizerFixtures.TokenizerJson));
        JsonElement model = doc.RootElement.GetProperty("model");
        File.WriteAllText(Path.Combine(folder, "vocab.json"), model.GetProperty("vocab").GetRawText());
        var merges = new StringBuilder("#version: 0.2\n");
        foreach (JsonElement merge in model.GetProperty("merges").EnumerateArray())
        {
            merges.Append(merge[0].GetString()).Append(' ').Append(merge[1].GetString()).Append('\n');
        }

        File.WriteAllText(Path.Combine(folder, "merges.txt"), merges.ToString());
        File.Copy(TokenizerFixtures.TokenizerConfig, Path.Combine(folder, "tokenizer_config.json"));
        return folder;
    }
}
