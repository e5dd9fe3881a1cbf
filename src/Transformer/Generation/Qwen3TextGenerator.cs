using Microsoft.ML.Qwen3Moe.Generation;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Text in, text out over a Qwen3-MoE model and its tokenizer: batched completions, streamed completions split into
/// reasoning and answer, and chat through the Qwen3 chat template. Generation runs on the model's
/// <see cref="CausalLMGenerator"/> (KV cache, device-side sampling); this class adds tokenization, the default EOS
/// ids, stop sequences and detokenization. One generation runs at a time per instance (calls wait for each other).
/// Does not own the model.
/// </summary>
public sealed class Qwen3TextGenerator
{
    private readonly CausalLMGenerator _generator;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>Generates with <paramref name="stages"/> (pipeline order) and <paramref name="tokenizer"/>.</summary>
    /// <param name="stages">The model's stages (one for an unsplit model).</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="eosTokenIds">
    /// Ids that end a completion when the options give none; null (default): the tokenizer's EOS, <c>&lt;|im_end|&gt;</c> and
    /// <c>&lt;|endoftext|&gt;</c> (add <see cref="GenerationConfig.ReadEosTokenIds"/> of the model folder when it has one).
    /// </param>
    public Qwen3TextGenerator(IReadOnlyList<Qwen3MoeForCausalLM> stages, Qwen3Tokenizer tokenizer, IReadOnlyList<int>? eosTokenIds = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _generator = new CausalLMGenerator(stages);
        Tokenizer = tokenizer;
        EosTokenIds = eosTokenIds ?? DefaultEosTokenIds(tokenizer, Array.Empty<int>());
    }

    /// <summary>The tokenizer.</summary>
    public Qwen3Tokenizer Tokenizer { get; }

    /// <summary>The ids that end a completion unless the options name others.</summary>
    public IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>The tokenizer's EOS, <c>&lt;|im_end|&gt;</c>, <c>&lt;|endoftext|&gt;</c> (those it has) and <paramref name="extra"/>, without
    /// duplicates.</summary>
    public static IReadOnlyList<int> DefaultEosTokenIds(Qwen3Tokenizer tokenizer, IEnumerable<int> extra)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var ids = new List<int> { tokenizer.EosTokenId };
        ids.AddRange(tokenizer.AddedTokens.Where(t => t.Content is "<|im_end|>" or "<|endoftext|>").Select(t => t.Id));
        ids.AddRange(extra);
        return ids.Distinct().ToArray();
    }

    /// <summary>Completes every prompt (batched together; shorter prompts are left padded).</summary>
    /// <exception cref="ArgumentException">No prompts, an empty prompt, or bad options.</exception>
    /// <exception cref="OperationCanceledException">Cancelled between tokens.</exception>
    public TextCompletion[] Generate(IReadOnlyList<string> prompts, TextGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Any(p => p is null)) throw new ArgumentException("A prompt is null.", nameof(prompts));
        return GenerateIds(Tokenizer.EncodeBatch(prompts), options, cancellationToken);
    }

    /// <summary>Completes prompts given as token ids (batched together).</summary>
    public TextCompletion[] GenerateIds(IReadOnlyList<IReadOnlyList<int>> prompts, TextGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        var o = Prepare(options);
        var rows = prompts.Select(_ => new Row(Tokenizer, o.StopSequences)).ToArray();
        _gate.Wait(cancellationToken);
        try
        {
            var results = _generator.Generate(prompts, o, (r, id) => rows[r].Add(id), cancellationToken);
            return results.Select((g, r) => new TextCompletion(rows[r].Finish(), g.TokenIds, g.FinishReason, g.PromptTokenCount)).ToArray();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Streams the completion of one prompt: a <see cref="TextDelta"/> per token (reasoning and answer told apart, the
    /// think tags dropped), then a closing one with the finish reason. Stops early when the enumeration is disposed.
    /// </summary>
    public IEnumerable<TextDelta> Stream(string prompt, TextGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return StreamIds(Tokenizer.Encode(prompt), options, cancellationToken);
    }

    /// <summary><see cref="Stream"/> for a prompt given as token ids.</summary>
    public IEnumerable<TextDelta> StreamIds(IReadOnlyList<int> prompt, TextGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var o = Prepare(options);
        var row = new Row(Tokenizer, o.StopSequences);
        // validates now (not at the first MoveNext)
        var steps = _generator.Stream(new[] { prompt }, o, (_, id) => row.Add(id), cancellationToken);
        return StreamCore(steps, row, cancellationToken);
    }

    private IEnumerable<TextDelta> StreamCore(IEnumerable<GenerationStep> steps, Row row, CancellationToken cancellationToken)
    {
        var splitter = new ReasoningSplitter();
        _gate.Wait(cancellationToken);
        try
        {
            FinishReason reason = FinishReason.Length;
            int count = 0;
            foreach (var step in steps)
            {
                count++;
                foreach (var (text, reasoning) in splitter.Push(row.TakeReleased()))
                    yield return new TextDelta(text, reasoning, step.TokenIds[0]);
                if (step.Finished[0] is { } r) reason = r;
            }
            row.Finish();
            foreach (var (text, reasoning) in splitter.Push(row.TakeReleased(), final: true))
                yield return new TextDelta(text, reasoning, -1);
            yield return new TextDelta(string.Empty, false, -1, reason, count);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Renders <paramref name="messages"/> with the chat template, generates the assistant turn and splits it into reasoning and answer.</summary>
    /// <param name="messages">The conversation (earlier assistant turns as <see cref="Qwen3ChatReply.ToMessage"/> gives them).</param>
    /// <param name="enableThinking">Whether the model may reason first (false adds the template's empty think block).</param>
    /// <param name="options">Sampling and stopping.</param>
    /// <param name="cancellationToken">Checked between tokens.</param>
    public (Qwen3ChatReply Reply, TextCompletion Completion) Chat(IReadOnlyList<ChatMessage> messages, bool enableThinking = true,
        TextGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var completion = GenerateIds(new[] { (IReadOnlyList<int>)Tokenizer.EncodeChat(messages, enableThinking: enableThinking) }, options,
            cancellationToken)[0];
        return (Qwen3ChatReply.Parse(completion.Text), completion);
    }

    /// <summary>Streams the assistant turn for <paramref name="messages"/> (see <see cref="Chat"/> and <see cref="Stream"/>).</summary>
    public IEnumerable<TextDelta> StreamChat(IReadOnlyList<ChatMessage> messages, bool enableThinking = true, TextGenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        StreamIds(Tokenizer.EncodeChat(messages, enableThinking: enableThinking), options, cancellationToken);

    private TextGenerationOptions Prepare(TextGenerationOptions? options)
    {
        var o = (options ?? new TextGenerationOptions()).CloneWith(EosTokenIds);
        o.Validate();
        return o;
    }

    /// <summary>One row's detokenization and stop-sequence watch.</summary>
    private sealed class Row
    {
        private readonly Qwen3StreamingDecoder _decoder;
        private readonly StopSequenceMatcher _stops;
        private readonly System.Text.StringBuilder _text = new();
        private string _released = string.Empty;

        public Row(Qwen3Tokenizer tokenizer, IEnumerable<string> stops)
        {
            _decoder = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
            _stops = new StopSequenceMatcher(stops);
        }

        /// <summary>Adds a generated id; true when a stop sequence completed.</summary>
        public bool Add(int id)
        {
            var released = _stops.Append(_decoder.Append(id));
            _text.Append(released);
            _released += released;
            return _stops.Stopped;
        }

        public string TakeReleased()
        {
            var r = _released;
            _released = string.Empty;
            return r;
        }

        /// <summary>Ends the row (releases what was held back) and returns its whole text.</summary>
        public string Finish()
        {
            var tail = _stops.Append(_decoder.Flush()) + _stops.Flush();
            _text.Append(tail);
            _released += tail;
            return _text.ToString();
        }
    }
}
