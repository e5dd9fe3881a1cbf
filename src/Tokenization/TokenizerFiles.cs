using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// Reads Hugging Face tokenizer files (<c>tokenizer.json</c>; <c>vocab.json</c> + <c>merges.txt</c>;
/// <c>tokenizer_config.json</c>) into a <see cref="TokenizerDefinition"/>, checking that they describe the Qwen2/Qwen3
/// byte-level BPE this library implements.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers 2.0.1 has no <c>tokenizer.json</c> reader, and its vocab/merges readers neither switch on
/// byte-level mode nor read added tokens from <c>tokenizer_config.json</c> (Qwen3's <c>vocab.json</c> lacks them).
/// Malformed files raise <see cref="InvalidDataException"/> naming the file and the part that is wrong; well-formed
/// files describing something else raise <see cref="NotSupportedException"/>.
/// </remarks>
internal static class TokenizerFiles
{
    /// <summary>Most bytes one tokenizer file may hold (Qwen3's tokenizer.json holds 11 MB).</summary>
    public const int MaxFileBytes = 1 << 30;

    private static readonly JsonDocumentOptions s_jsonOptions = new() { MaxDepth = 256 };

    /// <summary>Reads a <c>tokenizer.json</c>.</summary>
    public static TokenizerDefinition ReadTokenizerJson(Stream stream, string source)
    {
        byte[] bytes = ReadAll(stream, source);
        using JsonDocument doc = Parse(bytes, source);
        JsonElement root = RequireKind(doc.RootElement, JsonValueKind.Object, source, "the top level");

        JsonElement model = RequireProperty(root, "model", JsonValueKind.Object, source, "");
        string? type = OptionalString(model, "type", source, "model");
        if (type is not null && type != "BPE")
        {
            throw new NotSupportedException($"{source}: model.type is '{type}'; only byte-level BPE (Qwen2/Qwen3) is supported.");
        }

        CheckBpeOptions(model, source);
        CheckNormalizer(root, source);
        CheckPreTokenizer(root, source);
        CheckDecoder(root, source);

        JsonElement vocabElement = RequireProperty(model, "vocab", JsonValueKind.Object, source, "model");
        JsonElement mergesElement = RequireProperty(model, "merges", JsonValueKind.Array, source, "model");
        return new TokenizerDefinition
        {
            Source = source,
            SourceBytes = bytes.Length,
            Vocabulary = ReadVocabulary(vocabElement, source, "model.vocab"),
            Merges = ReadJsonMerges(mergesElement, source),
            AddedTokens = root.TryGetProperty("added_tokens", out JsonElement added) && added.ValueKind != JsonValueKind.Null
                ? ReadAddedTokenArray(RequireKind(added, JsonValueKind.Array, source, "added_tokens"), source)
                : [],
        };
    }

    /// <summary>Reads <c>vocab.json</c> and <c>merges.txt</c>.</summary>
    public static TokenizerDefinition ReadVocabAndMerges(Stream vocab, string vocabSource, Stream merges, string mergesSource)
    {
        Dictionary<string, int> vocabulary;
        byte[] vocabBytes = ReadAll(vocab, vocabSource), mergeBytes = ReadAll(merges, mergesSource);
        using (JsonDocument doc = Parse(vocabBytes, vocabSource))
        {
            vocabulary = ReadVocabulary(RequireKind(doc.RootElement, JsonValueKind.Object, vocabSource, "the top level"), vocabSource, "the top level");
        }

        var mergeList = new List<string>();
        using var reader = new StreamReader(new MemoryStream(mergeBytes), new UTF8Encoding(false, throwOnInvalidBytes: true)); // validated by ReadAll
        int lineNumber = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if ((lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal)) || line.Length == 0)
            {
                continue;
            }

            if (!IsMerge(line))
            {
                throw new InvalidDataException($"{mergesSource}, line {lineNumber}: a merge must be two tokens separated by one space, found '{line}'.");
            }

            mergeList.Add(line);
        }

        return new TokenizerDefinition
        {
            Source = vocabSource, SourceBytes = vocabBytes.LongLength + mergeBytes.LongLength, Vocabulary = vocabulary, Merges = mergeList, AddedTokens = [],
        };
    }

    /// <summary>Reads a <c>tokenizer_config.json</c>.</summary>
    public static TokenizerSettings ReadTokenizerConfig(Stream stream, string source)
    {
        byte[] bytes = ReadAll(stream, source);
        using JsonDocument doc = Parse(bytes, source);
        JsonElement root = RequireKind(doc.RootElement, JsonValueKind.Object, source, "the top level");

        string? tokenizerClass = OptionalString(root, "tokenizer_class", source, "");
        if (tokenizerClass is not null && !tokenizerClass.StartsWith("Qwen2Tokenizer", StringComparison.Ordinal))
        {
            throw new NotSupportedException($"{source}: tokenizer_class is '{tokenizerClass}'; only Qwen2Tokenizer (used by Qwen2, Qwen2.5 and Qwen3) is " +
                $"supported.");
        }

        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens_decoder", out JsonElement decoder) && decoder.ValueKind != JsonValueKind.Null)
        {
            foreach (JsonProperty entry in RequireKind(decoder, JsonValueKind.Object, source, "added_tokens_decoder").EnumerateObject())
            {
                string where = $"added_tokens_decoder[\"{entry.Name}\"]";
                if (!int.TryParse(entry.Name, out int id) || id < 0)
                {
                    throw new InvalidDataException($"{source}: {where}: the key must be a non-negative token id.");
                }

                added.Add(ReadAddedToken(RequireKind(entry.Value, JsonValueKind.Object, source, where), id, source, where));
            }
        }

        TokenizerSettings defaults = TokenizerSettings.Default;
        return new TokenizerSettings(
            ReadTokenText(root, "eos_token", source) ?? defaults.EosToken,
            ReadTokenText(root, "pad_token", source) ?? defaults.PadToken,
            ReadChatTemplate(root, source),
            added) { Source = source, SourceBytes = bytes.Length };
    }

    /// <summary>
    /// Reads a whole file (at most <see cref="MaxFileBytes"/>) and checks it is UTF-8, so no later step meets invalid text
    /// without knowing the file (JSON strings are otherwise transcoded lazily, with an error that names nothing).
    /// </summary>
    internal static byte[] ReadAll(Stream stream, string source)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int read;
        while ((read = stream.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (buffer.Length + read > MaxFileBytes)
            {
                throw new InvalidDataException($"{source}: more than {MaxFileBytes:N0} bytes; a tokenizer file is far smaller.");
            }

            buffer.Write(chunk, 0, read);
        }

        byte[] bytes = buffer.ToArray();
        if (!Utf8.IsValid(bytes))
        {
            int valid = ValidPrefixLength(bytes);
            throw new InvalidDataException($"{source} is not valid UTF-8 (first invalid byte at offset {valid:N0}).");
        }

        return bytes;
    }

    private static int ValidPrefixLength(byte[] bytes)
    {
        Utf8.ToUtf16(bytes, new char[bytes.Length], out int read, out _, replaceInvalidSequences: false);
        return read;
    }

    private static JsonDocument Parse(byte[] bytes, string source)
    {
        try
        {
            return JsonDocument.Parse(bytes, s_jsonOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source} is not valid JSON: {e.Message}", e);
        }
    }

    private static void CheckBpeOptions(JsonElement model, string source)
    {
        if (model.TryGetProperty("dropout", out JsonElement dropout) && dropout.ValueKind != JsonValueKind.Null)
        {
            throw new NotSupportedException($"{source}: model.dropout is set; BPE dropout is not supported (it makes encoding random).");
        }

        foreach (string name in new[] { "continuing_subword_prefix", "end_of_word_suffix", "unk_token" })
        {
            string? value = OptionalString(model, name, source, "model");
            if (!string.IsNullOrEmpty(value))
            {
                throw new NotSupportedException($"{source}: model.{name} is '{value}'; Qwen's byte-level BPE uses none.");
            }
        }

        foreach (string name in new[] { "byte_fallback", "ignore_merges", "fuse_unk" })
        {
            if (model.TryGetProperty(name, out JsonElement flag) && flag.ValueKind == JsonValueKind.True)
            {
                throw new NotSupportedException($"{source}: model.{name} is true; Qwen's byte-level BPE does not use it.");
            }
        }
    }

    private static void CheckNormalizer(JsonElement root, string source)
    {
        if (!root.TryGetProperty("normalizer", out JsonElement normalizer) || normalizer.ValueKind == JsonValueKind.Null)
        {
            throw new NotSupportedException($"{source}: there is no normalizer; Qwen2/Qwen3 tokenizers use NFC, and this library always applies it.");
        }

        string? type = OptionalString(RequireKind(normalizer, JsonValueKind.Object, source, "normalizer"), "type", source, "normalizer");
        if (type != "NFC")
        {
            throw new NotSupportedException($"{source}: normalizer.type is '{type}'; only NFC (as in Qwen2/Qwen3) is supported.");
        }
    }

    private static void CheckPreTokenizer(JsonElement root, string source)
    {
        JsonElement pre = RequireProperty(root, "pre_tokenizer", JsonValueKind.Object, source, "");
        const string expected = "a Sequence of Split (the Qwen2 pattern, Isolated) and ByteLevel (use_regex false)";
        if (OptionalString(pre, "type", source, "pre_tokenizer") != "Sequence")
        {
            throw new NotSupportedException($"{source}: pre_tokenizer.type must be 'Sequence' ({expected}).");
        }

        JsonElement[] steps = RequireProperty(pre, "pretokenizers", JsonValueKind.Array, source, "pre_tokenizer").EnumerateArray().ToArray();
        if (steps.Length != 2 || steps.Any(s => s.ValueKind != JsonValueKind.Object))
        {
            throw new NotSupportedException($"{source}: pre_tokenizer.pretokenizers must be {expected}.");
        }

        JsonElement split = steps[0];
        string? pattern = split.TryGetProperty("pattern", out JsonElement p) && p.ValueKind == JsonValueKind.Object
            ? OptionalString(p, "Regex", source, "pre_tokenizer.pretokenizers[0].pattern")
            : null;
        if (OptionalString(split, "type", source, "pre_tokenizer.pretokenizers[0]") != "Split" || pattern != Qwen2PreTokenizer.Pattern ||
            OptionalString(split, "behavior", source, "pre_tokenizer.pretokenizers[0]") != "Isolated" ||
            (split.TryGetProperty("invert", out JsonElement invert) && invert.ValueKind == JsonValueKind.True))
        {
            throw new NotSupportedException(
                $"{source}: pre_tokenizer.pretokenizers[0] must be a Split with the Qwen2 pattern {Qwen2PreTokenizer.Pattern}, behavior Isolated, invert " +
                    $"false; found {split.GetRawText()}.");
        }

        JsonElement byteLevel = steps[1];
        if (OptionalString(byteLevel, "type", source, "pre_tokenizer.pretokenizers[1]") != "ByteLevel" ||
            (byteLevel.TryGetProperty("add_prefix_space", out JsonElement aps) && aps.ValueKind == JsonValueKind.True) ||
            (byteLevel.TryGetProperty("use_regex", out JsonElement useRegex) && useRegex.ValueKind == JsonValueKind.True))
        {
            throw new NotSupportedException($"{source}: pre_tokenizer.pretokenizers[1] must be ByteLevel with add_prefix_space and use_regex false; found " +
                $"{byteLevel.GetRawText()}.");
        }
    }

    private static void CheckDecoder(JsonElement root, string source)
    {
        if (root.TryGetProperty("decoder", out JsonElement decoder) && decoder.ValueKind != JsonValueKind.Null &&
            OptionalString(RequireKind(decoder, JsonValueKind.Object, source, "decoder"), "type", source, "decoder") != "ByteLevel")
        {
            throw new NotSupportedException($"{source}: decoder must be ByteLevel; found {decoder.GetRawText()}.");
        }
    }

    private static Dictionary<string, int> ReadVocabulary(JsonElement vocab, string source, string where)
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw new InvalidDataException($"{source}: {where}[\"{entry.Name}\"] must be a non-negative integer id, found {entry.Value.GetRawText()}.");
            }

            result[entry.Name] = id;
        }

        if (result.Count == 0)
        {
            throw new InvalidDataException($"{source}: {where} is empty.");
        }

        return result;
    }

    private static List<string> ReadJsonMerges(JsonElement merges, string source)
    {
        // Older files store "left right" strings, newer ones [left, right] pairs.
        var result = new List<string>(merges.GetArrayLength());
        int index = 0;
        foreach (JsonElement merge in merges.EnumerateArray())
        {
            string? text = merge.ValueKind switch
            {
                JsonValueKind.String => merge.GetString(),
                JsonValueKind.Array when merge.GetArrayLength() == 2 && merge.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
                    merge[0].GetString() + " " + merge[1].GetString(),
                _ => null,
            };
            if (text is null || !IsMerge(text))
            {
                throw new InvalidDataException($"{source}: model.merges[{index}] must be \"left right\" or [\"left\", \"right\"] (non-empty, no spaces " +
                    $"inside), found {merge.GetRawText()}.");
            }

            result.Add(text);
            index++;
        }

        return result;
    }

    /// <summary>Two non-empty tokens separated by exactly one space.</summary>
    private static bool IsMerge(string text)
    {
        int space = text.IndexOf(' ');
        return space > 0 && space < text.Length - 1 && text.IndexOf(' ', space + 1) < 0;
    }

    private static List<AddedToken> ReadAddedTokenArray(JsonElement array, string source)
    {
        var result = new List<AddedToken>();
        int index = 0;
        foreach (JsonElement entry in array.EnumerateArray())
        {
            string where = $"added_tokens[{index++}]";
            RequireKind(entry, JsonValueKind.Object, source, where);
            JsonElement idElement = RequireProperty(entry, "id", JsonValueKind.Number, source, where);
            if (!idElement.TryGetInt32(out int id) || id < 0)
            {
                throw new InvalidDataException($"{source}: {where}.id must be a non-negative integer, found {idElement.GetRawText()}.");
            }

            result.Add(ReadAddedToken(entry, id, source, where));
        }

        return result;
    }

    private static AddedToken ReadAddedToken(JsonElement entry, int id, string source, string where)
    {
        string content = RequireProperty(entry, "content", JsonValueKind.String, source, where).GetString()!;
        if (content.Length == 0)
        {
            throw new InvalidDataException($"{source}: {where}.content is empty.");
        }

        foreach (string flag in new[] { "lstrip", "rstrip", "single_word" })
        {
            if (entry.TryGetProperty(flag, out JsonElement value) && value.ValueKind == JsonValueKind.True)
            {
                throw new NotSupportedException($"{source}: {where} ('{content}') sets {flag}, which Qwen's added tokens never do and this library does not " +
                    $"support.");
            }
        }

        // 'normalized' is not checked: added tokens are matched in the raw text; for Qwen they are all ASCII, which
        // NFC leaves unchanged.
        bool special = entry.TryGetProperty("special", out JsonElement s) && s.ValueKind == JsonValueKind.True;
        return new AddedToken(content, id, special);
    }

    private static string? ReadTokenText(JsonElement root, string name, string source)
    {
        // A token is stored either as a string or as a serialised AddedToken object with a "content".
        if (!root.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object => RequireProperty(value, "content", JsonValueKind.String, source, name).GetString(),
            _ => throw new InvalidDataException($"{source}: {name} must be a string or an object with \"content\", found {value.GetRawText()}."),
        };
    }

    private static string? ReadChatTemplate(JsonElement root, string source)
    {
        if (!root.TryGetProperty("chat_template", out JsonElement template) || template.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (template.ValueKind == JsonValueKind.String)
        {
            return template.GetString();
        }

        // Some configs hold a list of named templates; the one used by default is named "default".
        if (template.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement named in template.EnumerateArray())
            {
                if (named.ValueKind == JsonValueKind.Object && OptionalString(named, "name", source, "chat_template[]") == "default")
                {
                    return RequireProperty(named, "template", JsonValueKind.String, source, "chat_template[default]").GetString();
                }
            }

            throw new NotSupportedException($"{source}: chat_template is a list without a template named 'default'.");
        }

        throw new InvalidDataException($"{source}: chat_template must be a string or a list of {{name, template}}, found {template.ValueKind}.");
    }

    private static JsonElement RequireKind(JsonElement element, JsonValueKind kind, string source, string where)
    {
        if (element.ValueKind != kind)
        {
            throw new InvalidDataException($"{source}: {where} must be a JSON {kind.ToString().ToLowerInvariant()}, found " +
                $"{element.ValueKind.ToString().ToLowerInvariant()}.");
        }

        return element;
    }

    private static JsonElement RequireProperty(JsonElement parent, string name, JsonValueKind kind, string source, string where)
    {
        string path = where.Length == 0 ? name : $"{where}.{name}";
        if (!parent.TryGetProperty(name, out JsonElement value))
        {
            throw new InvalidDataException($"{source}: '{path}' is missing.");
        }

        return RequireKind(value, kind, source, $"'{path}'");
    }

    private static string? OptionalString(JsonElement parent, string name, string source, string where)
    {
        if (!parent.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        string path = where.Length == 0 ? name : $"{where}.{name}";
        return RequireKind(value, JsonValueKind.String, source, $"'{path}'").GetString();
    }
}
