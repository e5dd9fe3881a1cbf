using System.Buffers;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>
/// The Qwen3 (and Qwen2/Qwen2.5) tokenizer: byte-level BPE over NFC-normalised text split by the Qwen2 pattern, with
/// added tokens (<c>&lt;|im_start|&gt;</c>, <c>&lt;think&gt;</c>, ...) matched whole. It gives the ids Hugging Face
/// <c>tokenizers</c> gives (no BOS/EOS are added), and decodes them back to text. Thread-safe.
/// </summary>
/// <remarks>
/// <para>Built on Microsoft.ML.Tokenizers 2.0.1: the vocabulary, merges and BPE algorithm are those of a
/// <see cref="BpeTokenizer"/> made with the <see cref="BpeOptions"/> recipe (byte-level, NFC, Qwen2 split regex,
/// added tokens split out first), available as <see cref="BpeTokenizer"/> for APIs that take a
/// <see cref="Tokenizer"/>.</para>
/// <para>What this class adds, and why: the library cannot read <c>tokenizer.json</c> or NFC-normalise; and its
/// encoder does not scale across threads (its BPE cache takes a global lock per word; its regex pre-tokenizer
/// allocates and shares one regex runner). So <see cref="Encode(string)"/> and <see cref="EncodeBatch(IReadOnlyList{string}, int, int)"/> split the text
/// themselves (<see cref="Qwen2PreTokenizer"/>), look each piece up in a lock-free cache, and call the library's BPE
/// only for pieces not seen before; pieces of hundreds of characters go to <see cref="LongPieceBpe"/>, since the
/// library's BPE slows down sharply with the length of a piece.</para>
/// </remarks>
public sealed class Qwen3Tokenizer
{
    /// <summary>Pieces cached at most (a few MB; a large corpus has far fewer distinct pieces).</summary>
    private const int CacheCapacity = 1 << 18;

    /// <summary>Below this many texts per thread, <see cref="EncodeBatch(IReadOnlyList{string}, int, int)"/> does not start more threads.</summary>
    private const int MinTextsPerThread = 16;

    /// <summary>Texts a <see cref="EncodeBatch(IReadOnlyList{string}, int, int)"/> worker claims at a time.</summary>
    private const int BatchChunk = 64;

    [ThreadStatic]
    private static IdBuffer? t_buffer;

    private readonly AddedTokenMatcher _matcher;
    private readonly LongPieceBpe _longPieces;
    private readonly PieceCache _cache = new(CacheCapacity);
    private readonly byte[] _tokenBytes;
    private readonly int[] _tokenOffsets; // Token id's bytes are _tokenBytes[_tokenOffsets[id].._tokenOffsets[id + 1]].
    private readonly bool[] _isSpecial;
    private readonly string? _chatTemplateSource;
    private Qwen3ChatTemplate? _chatTemplate;

    private Qwen3Tokenizer(TokenizerDefinition definition)
    {
        string source = definition.Source;
        VocabularySize = CheckedVocabularySize(definition); // first: ids size the tables built below
        AddedTokens = MergeAddedTokens(definition, source);
        var addedByContent = AddedTokens.ToDictionary(t => t.Content, t => t.Id, StringComparer.Ordinal);

        BpeTokenizer = CreateBpeTokenizer(definition, addedByContent);
        _longPieces = new LongPieceBpe(definition.Vocabulary, definition.Merges, source);
        _matcher = new AddedTokenMatcher(AddedTokens);

        (_tokenBytes, _tokenOffsets, _isSpecial) = BuildDecodingTable(definition, AddedTokens, VocabularySize);

        TokenizerSettings settings = definition.Settings;
        PadTokenId = ResolveId(settings.PadToken, "pad", definition, addedByContent);
        EosTokenId = ResolveId(settings.EosToken, "eos", definition, addedByContent);
        _chatTemplateSource = settings.ChatTemplate;
    }

    /// <summary>
    /// The Microsoft.ML.Tokenizers tokenizer built from the same files by the <see cref="BpeOptions"/> recipe, for
    /// APIs that take a <see cref="Tokenizer"/>. It gives the same ids as <see cref="Encode(string)"/> except where .NET's regex
    /// differs from Hugging Face's: letters/digits outside the BMP, and added tokens followed by a combining mark.
    /// </summary>
    public BpeTokenizer BpeTokenizer { get; }

    /// <summary>Number of token ids (151,669 for Qwen3). A model's embedding table may be larger; the extra ids are padding.</summary>
    public int VocabularySize { get; }

    /// <summary>Id of the padding token (<c>pad_token</c>, <c>&lt;|endoftext|&gt;</c> for Qwen3).</summary>
    public int PadTokenId { get; }

    /// <summary>Id of the end-of-sequence token (<c>eos_token</c>; <c>&lt;|im_end|&gt;</c> when there is no tokenizer_config.json).</summary>
    public int EosTokenId { get; }

    /// <summary>The added tokens, special (control) or not, in id order.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>
    /// The chat template of <c>tokenizer_config.json</c>, or Qwen3's when the folder has none.
    /// </summary>
    /// <exception cref="NotSupportedException">The folder's template is not one this library can render.</exception>
    public Qwen3ChatTemplate ChatTemplate => _chatTemplate ??= _chatTemplateSource is null
        ? Qwen3ChatTemplate.Qwen3
        : Qwen3ChatTemplate.FromJinja(_chatTemplateSource);

    /// <summary>
    /// Loads the tokenizer from a model folder as downloaded from the hub: <c>tokenizer.json</c>, or else
    /// <c>vocab.json</c> + <c>merges.txt</c>; plus <c>tokenizer_config.json</c> when present.
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has neither <c>tokenizer.json</c> nor <c>vocab.json</c> + <c>merges.txt</c>.</exception>
    /// <exception cref="InvalidDataException">A file is malformed; the message names the file and the part.</exception>
    /// <exception cref="NotSupportedException">The files describe a tokenizer other than Qwen2/Qwen3's.</exception>
    public static Qwen3Tokenizer FromFolder(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Tokenizer folder '{folder}' does not exist.");
        }

        string? config = ExistingOrNull(Path.Combine(folder, "tokenizer_config.json"));
        string tokenizerJson = Path.Combine(folder, "tokenizer.json");
        if (File.Exists(tokenizerJson))
        {
            return FromTokenizerJson(tokenizerJson, config);
        }

        string vocab = Path.Combine(folder, "vocab.json");
        string merges = Path.Combine(folder, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges))
        {
            return FromVocabAndMerges(vocab, merges, config);
        }

        throw new FileNotFoundException($"Folder '{folder}' has neither tokenizer.json nor vocab.json + merges.txt.");
    }

    /// <summary>Loads the tokenizer from a <c>tokenizer.json</c> file, with an optional <c>tokenizer_config.json</c>.</summary>
    /// <inheritdoc cref="FromFolder" path="/exception"/>
    public static Qwen3Tokenizer FromTokenizerJson(string tokenizerJsonPath, string? tokenizerConfigPath = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJsonPath);
        using Stream json = RegularFile.OpenRead(tokenizerJsonPath);
        using Stream? config = OpenOrNull(tokenizerConfigPath);
        return Create(TokenizerFiles.ReadTokenizerJson(json, tokenizerJsonPath), config, tokenizerConfigPath);
    }

    /// <summary>Loads the tokenizer from <c>tokenizer.json</c> content, with optional <c>tokenizer_config.json</c> content.</summary>
    /// <inheritdoc cref="FromFolder" path="/exception"/>
    public static Qwen3Tokenizer FromTokenizerJson(Stream tokenizerJson, Stream? tokenizerConfig = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJson);
        return Create(TokenizerFiles.ReadTokenizerJson(tokenizerJson, "tokenizer.json"), tokenizerConfig, "tokenizer_config.json");
    }

    /// <summary>
    /// Loads the tokenizer from <c>vocab.json</c> + <c>merges.txt</c>. Qwen3's <c>vocab.json</c> lacks the added tokens
    /// (<c>&lt;|im_start|&gt;</c>, ...), which come from <c>added_tokens_decoder</c> in <c>tokenizer_config.json</c>.
    /// </summary>
    /// <inheritdoc cref="FromFolder" path="/exception"/>
    public static Qwen3Tokenizer FromVocabAndMerges(string vocabPath, string mergesPath, string? tokenizerConfigPath = null)
    {
        ArgumentNullException.ThrowIfNull(vocabPath);
        ArgumentNullException.ThrowIfNull(mergesPath);
        using Stream vocab = RegularFile.OpenRead(vocabPath);
        using Stream merges = RegularFile.OpenRead(mergesPath);
        using Stream? config = OpenOrNull(tokenizerConfigPath);
        return Create(TokenizerFiles.ReadVocabAndMerges(vocab, vocabPath, merges, mergesPath), config, tokenizerConfigPath);
    }

    /// <summary>Loads the tokenizer from <c>vocab.json</c>, <c>merges.txt</c> and optional <c>tokenizer_config.json</c> content.</summary>
    /// <inheritdoc cref="FromFolder" path="/exception"/>
    public static Qwen3Tokenizer FromVocabAndMerges(Stream vocab, Stream merges, Stream? tokenizerConfig = null)
    {
        ArgumentNullException.ThrowIfNull(vocab);
        ArgumentNullException.ThrowIfNull(merges);
        return Create(TokenizerFiles.ReadVocabAndMerges(vocab, "vocab.json", merges, "merges.txt"), tokenizerConfig, "tokenizer_config.json");
    }

    /// <summary>
    /// Encodes text to ids as Hugging Face does with <c>add_special_tokens=False</c>: added tokens in the text are
    /// matched whole. Any string is accepted; lone surrogates are encoded as U+FFFD.
    /// </summary>
    public int[] Encode(string text) => EncodePrefix(text, int.MaxValue);

    /// <summary>
    /// The first <paramref name="maxTokens"/> ids of <see cref="Encode(string)"/>, found without encoding the rest: the
    /// text is split into pieces left to right and encoding stops at the piece that reaches the budget, so a huge text
    /// costs about as much as its prefix (each piece is encoded independently, so the ids are exactly those of the full
    /// encoding, cut).
    /// </summary>
    /// <param name="text">The text.</param>
    /// <param name="maxTokens">Most ids to return; positive.</param>
    public int[] EncodePrefix(string text, int maxTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTokens);
        IdBuffer buffer = t_buffer ??= new IdBuffer();
        buffer.Clear();
        EncodeInto(text, buffer, maxTokens);
        int[] result = buffer.Span[..Math.Min(buffer.Count, maxTokens)].ToArray();
        if (buffer.IsOversized)
        {
            t_buffer = null;
        }

        return result;
    }

    /// <summary>
    /// Encodes many texts, in parallel on up to <paramref name="maxDegreeOfParallelism"/> threads; each result is what
    /// <see cref="EncodePrefix(string, int)"/> gives for that text. Scales with cores (no locks on the common path).
    /// </summary>
    /// <param name="texts">The texts; none may be null.</param>
    /// <param name="maxDegreeOfParallelism">Threads to use; -1 (default) for <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="maxTokens">Most ids per text (the rest of a text is not encoded); default all.</param>
    public int[][] EncodeBatch(IReadOnlyList<string> texts, int maxDegreeOfParallelism = -1, int maxTokens = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTokens);
        if (maxDegreeOfParallelism == 0 || maxDegreeOfParallelism < -1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxDegreeOfParallelism), maxDegreeOfParallelism, "Use -1 (all cores) or a positive thread count.");
        }

        var results = new int[texts.Count][];
        int threads = maxDegreeOfParallelism == -1 ? Environment.ProcessorCount : maxDegreeOfParallelism;
        threads = Math.Max(1, Math.Min(threads, texts.Count / MinTextsPerThread));
        int next = 0;

        // Workers claim chunks of texts from a shared counter; each has its own buffer, so the only shared writes
        // are the counter and (rarely) the piece cache.
        void Work()
        {
            var buffer = new IdBuffer();
            for (int start = Interlocked.Add(ref next, BatchChunk) - BatchChunk; start < texts.Count;
                 start = Interlocked.Add(ref next, BatchChunk) - BatchChunk)
            {
                int end = Math.Min(start + BatchChunk, texts.Count);
                for (int i = start; i < end; i++)
                {
                    string text = texts[i] ?? throw new ArgumentException($"texts[{i}] is null.", nameof(texts));
                    buffer.Clear();
                    EncodeInto(text, buffer, maxTokens);
                    results[i] = buffer.Span[..Math.Min(buffer.Count, maxTokens)].ToArray();
                }
            }
        }

        if (threads == 1)
        {
            Work();
        }
        else
        {
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => Work());
        }

        return results;
    }

    /// <summary>
    /// Decodes ids to text as Hugging Face does (<c>clean_up_tokenization_spaces=False</c>): bytes that are not valid
    /// UTF-8 become U+FFFD. Ids that are no token (e.g. the model's padding ids past <see cref="VocabularySize"/>) are skipped.
    /// </summary>
    /// <param name="ids">The ids.</param>
    /// <param name="skipSpecialTokens">Drop special tokens (<c>&lt;|im_end|&gt;</c>, ...); non-special added tokens such as <c>&lt;think&gt;</c> stay.</param>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        byte[] bytes = ArrayPool<byte>.Shared.Rent(256);
        int length = 0;
        try
        {
            foreach (int id in ids)
            {
                ReadOnlySpan<byte> token = GetTokenBytes(id, skipSpecialTokens);
                if (length + token.Length > bytes.Length)
                {
                    byte[] larger = ArrayPool<byte>.Shared.Rent(Math.Max(bytes.Length * 2, length + token.Length));
                    bytes.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(bytes);
                    bytes = larger;
                }

                token.CopyTo(bytes.AsSpan(length));
                length += token.Length;
            }

            return Encoding.UTF8.GetString(bytes, 0, length);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <summary>Starts a decoder for generated ids that emits text as soon as each character is complete.</summary>
    /// <param name="skipSpecialTokens">Drop special tokens, as in <see cref="Decode"/>.</param>
    public Qwen3StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>Renders a conversation with <see cref="ChatTemplate"/> and encodes it.</summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="addGenerationPrompt">End with the assistant header, for generation.</param>
    /// <param name="enableThinking">With <c>false</c>, the generation prompt holds an empty think block.</param>
    public int[] EncodeChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool enableThinking = true) =>
        Encode(ChatTemplate.Render(messages, addGenerationPrompt, enableThinking));

    /// <summary>The bytes a token decodes to; empty for ids that are no token and for special tokens when skipped.</summary>
    internal ReadOnlySpan<byte> GetTokenBytes(int id, bool skipSpecialTokens)
    {
        if ((uint)id >= (uint)VocabularySize || (skipSpecialTokens && _isSpecial[id]))
        {
            return default;
        }

        return _tokenBytes.AsSpan(_tokenOffsets[id], _tokenOffsets[id + 1] - _tokenOffsets[id]);
    }

    /// <summary>Distinct pieces held by the encoding cache (for tests and benchmarks).</summary>
    internal int CachedPieceCount => _cache.Count;

    /// <summary>Appends the ids of <paramref name="text"/>, stopping after the piece that brings them to <paramref name="limit"/> or more.</summary>
    private void EncodeInto(string text, IdBuffer ids, int limit)
    {
        int position = 0;
        while (position < text.Length && ids.Count < limit)
        {
            int found = _matcher.Find(text, position, out AddedToken? token);
            int segmentEnd = found < 0 ? text.Length : found;
            if (segmentEnd > position)
            {
                EncodeSegment(text, position, segmentEnd - position, ids, limit);
            }

            if (token is null || ids.Count >= limit)
            {
                break;
            }

            ids.Add(token.Id);
            position = found + token.Content.Length;
        }
    }

    private void EncodeSegment(string text, int start, int length, IdBuffer ids, int limit)
    {
        ReadOnlySpan<char> segment = text.AsSpan(start, length);
        if (NfcNormalizer.NeedsWork(segment))
        {
            segment = NfcNormalizer.Apply(start == 0 && length == text.Length ? text : segment.ToString());
        }

        for (int i = 0; i < segment.Length && ids.Count < limit;)
        {
            int end = Qwen2PreTokenizer.NextPieceEnd(segment, i);
            ReadOnlySpan<char> piece = segment[i..end];
            i = end;
            if (piece.Length >= LongPieceBpe.MinLength)
            {
                _longPieces.Encode(piece, ids);
                continue;
            }

            if (!_cache.TryGet(piece, out int[] pieceIds))
            {
                // A piece never equals an added token (those were split out above, and a piece cannot hold both
                // letters and the '<', '>' around them), so the library's BPE sees it as plain text.
                string pieceText = piece.ToString();
                pieceIds = [.. BpeTokenizer.EncodeToIds(pieceText, considerPreTokenization: false, considerNormalization: false)];
                _cache.TryAdd(pieceText, pieceIds);
            }

            ids.AddRange(pieceIds);
        }
    }

    private static Qwen3Tokenizer Create(TokenizerDefinition definition, Stream? config, string? configSource)
    {
        if (config is not null)
        {
            definition.Settings = TokenizerFiles.ReadTokenizerConfig(config, configSource ?? "tokenizer_config.json");
        }

        return new Qwen3Tokenizer(definition);
    }

    private static List<AddedToken> MergeAddedTokens(TokenizerDefinition definition, string source)
    {
        // tokenizer.json lists them in added_tokens; tokenizer_config.json in added_tokens_decoder (the only source
        // with vocab.json + merges.txt). Both may be present and must agree.
        var byId = new SortedDictionary<int, AddedToken>();
        foreach (AddedToken token in definition.AddedTokens.Concat(definition.Settings.AddedTokens))
        {
            if (byId.TryGetValue(token.Id, out AddedToken? existing) && existing.Content != token.Content)
            {
                throw new InvalidDataException($"{source}: added token id {token.Id} is both '{existing.Content}' and '{token.Content}'.");
            }

            if (definition.Vocabulary.TryGetValue(token.Content, out int vocabId) && vocabId != token.Id)
            {
                throw new InvalidDataException($"{source}: added token '{token.Content}' has id {token.Id} but the vocabulary gives it {vocabId}.");
            }

            byId.TryAdd(token.Id, token);
        }

        var contents = new HashSet<string>(StringComparer.Ordinal);
        foreach (AddedToken token in byId.Values)
        {
            if (!contents.Add(token.Content))
            {
                throw new InvalidDataException($"{source}: added token '{token.Content}' appears with two ids.");
            }
        }

        return [.. byId.Values];
    }

    private static BpeTokenizer CreateBpeTokenizer(TokenizerDefinition definition, Dictionary<string, int> addedByContent)
    {
        // The recipe of mlnet-reference.md section 3.7. Only the BpeOptions overload can turn on byte-level mode;
        // without an explicit pre-tokenizer the library would silently split on words/non-words; the pre-tokenizer
        // must know the added tokens, or "<|im_start|>" is encoded as ordinary text; BOS/EOS stay unset (Qwen adds none).
        var regex = new Regex(Qwen2PreTokenizer.Pattern, RegexOptions.Compiled, TimeSpan.FromSeconds(30));
        var options = new BpeOptions(definition.Vocabulary.Where(kv => !addedByContent.ContainsKey(kv.Key)))
        {
            Merges = definition.Merges,
            SpecialTokens = addedByContent,
            Normalizer = NfcNormalizer.Instance,
            PreTokenizer = new RegexPreTokenizer(regex, addedByContent),
            ByteLevel = true,
        };

        try
        {
            return BpeTokenizer.Create(options);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{definition.Source}: the vocabulary and merges were rejected by Microsoft.ML.Tokenizers: {e.Message}", e);
        }
    }

    private static (byte[] Bytes, int[] Offsets, bool[] IsSpecial) BuildDecodingTable(
        TokenizerDefinition definition, IReadOnlyList<AddedToken> added, int size)
    {
        var bytesById = new byte[size][];
        var isSpecial = new bool[size];
        foreach ((string token, int id) in definition.Vocabulary)
        {
            if (!ByteLevelAlphabet.TryGetBytes(token, out bytesById[id]))
            {
                throw new InvalidDataException($"{definition.Source}: vocabulary entry '{token}' (id {id}) has characters outside the byte-level alphabet; " +
                    $"this is not a byte-level BPE vocabulary.");
            }
        }

        foreach (AddedToken token in added)
        {
            bytesById[token.Id] = Encoding.UTF8.GetBytes(token.Content);
            isSpecial[token.Id] = token.Special;
        }

        // One flat array; ids that are no token get no bytes, so they decode to nothing.
        var offsets = new int[size + 1];
        var all = new byte[bytesById.Sum(b => b?.Length ?? 0)];
        int position = 0;
        for (int id = 0; id < size; id++)
        {
            offsets[id] = position;
            if (bytesById[id] is { } b)
            {
                b.CopyTo(all, position);
                position += b.Length;
            }
        }

        offsets[size] = position;
        return (all, offsets, isSpecial);
    }

    private static int ResolveId(string token, string role, TokenizerDefinition definition, Dictionary<string, int> added)
    {
        if (added.TryGetValue(token, out int id) || definition.Vocabulary.TryGetValue(token, out id))
        {
            return id;
        }

        throw new InvalidDataException($"{definition.Source}: the {role} token '{token}' is not in the vocabulary or the added tokens (with vocab.json + " +
            $"merges.txt, pass tokenizer_config.json, which lists the added tokens).");
    }

    /// <summary>
    /// One more than the largest id, after checking every id against the size of the files that name it: each id costs
    /// its file a few bytes, so an id at or beyond the files' total size is impossible in a real tokenizer and would
    /// otherwise size the decoding table (a vocabulary id of 500,000,000 asked for gigabytes; 2^31−1 overflowed).
    /// </summary>
    private static int CheckedVocabularySize(TokenizerDefinition definition)
    {
        long bound = definition.SourceBytes + definition.Settings.SourceBytes;
        int largest = 0;
        void Check(int id, string token, string source)
        {
            if (bound > 0 && id >= bound)
            {
                throw new InvalidDataException(
                    $"{source}: token '{token}' has id {id:N0}, impossible for tokenizer files of {bound:N0} bytes in all (ids must be below the files' " +
                    $"size).");
            }

            largest = Math.Max(largest, id);
        }

        foreach ((string token, int id) in definition.Vocabulary)
        {
            Check(id, token, definition.Source);
        }

        foreach (AddedToken token in definition.AddedTokens)
        {
            Check(token.Id, token.Content, definition.Source);
        }

        foreach (AddedToken token in definition.Settings.AddedTokens)
        {
            Check(token.Id, token.Content, definition.Settings.Source ?? "tokenizer_config.json");
        }

        return largest + 1;
    }

    private static string? ExistingOrNull(string path) => File.Exists(path) ? path : null;

    private static FileStream? OpenOrNull(string? path) => path is null ? null : RegularFile.OpenRead(path);
}
