using Microsoft.ML.Qwen3Moe.Kernels;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>
/// Autoregressive generation over the stages of a <see cref="Qwen3MoeForCausalLM"/> (one stage, or a pipeline in stage
/// order): one prefill of the prompts through the ordinary attention path, then one-token decode steps over a
/// preallocated <see cref="KvCache"/> per stage. Prompts of different lengths go together, left padded: every row
/// writes the same cache column, so a step is one batched forward, while positions are per row (a row's first real token
/// is position 0, as Hugging Face's <c>generate</c>) and the cache masks the padding. Tokens are chosen on the device
/// (<see cref="GenerationOptions"/>); the only host read per step is the chosen ids. Not thread-safe (one generation at
/// a time per model).
/// </summary>
public sealed class CausalLMGenerator
{
    private readonly Qwen3MoeForCausalLM[] _stages;

    /// <summary>Generates with <paramref name="stages"/> (pipeline order: the first holds the embeddings, the last the head).</summary>
    /// <exception cref="ArgumentException">No stages, or the first/last stage lacks the embeddings/head.</exception>
    public CausalLMGenerator(IReadOnlyList<Qwen3MoeForCausalLM> stages)
    {
        ArgumentNullException.ThrowIfNull(stages);
        if (stages.Count == 0) throw new ArgumentException("Generation needs at least one model stage.", nameof(stages));
        if (!stages[0].Stage.IsFirst || !stages[^1].Stage.IsLast)
            throw new ArgumentException("The stages must run from the first pipeline stage (embeddings) to the last (LM head).", nameof(stages));
        _stages = stages.ToArray();
    }

    /// <summary>Test hook: sees each step's float32 logits [B,V] (before any penalty or sampling).</summary>
    internal Action<Tensor>? OnLogits { get; set; }

    /// <summary>Vocabulary size of the model (ids are in [0, this)).</summary>
    public long VocabSize => _stages[0].Parameters.Model.VocabSize;

    /// <summary>Generates for every prompt and returns each one's new tokens.</summary>
    /// <param name="prompts">Token ids of each prompt (at least one id each).</param>
    /// <param name="options">Sampling and stopping; <see cref="GenerationOptions.EosTokenIds"/> null means no EOS id.</param>
    /// <param name="stop">Optional: called with (row, new id) for each running row; true ends that row with <see cref="FinishReason.Stop"/>.</param>
    /// <param name="cancellationToken">Checked between tokens.</param>
    public GenerationResult[] Generate(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, Func<int, int, bool>? stop = null,
        CancellationToken cancellationToken = default)
    {
        var tokens = prompts.Select(_ => new List<int>()).ToArray();
        var reasons = new FinishReason[prompts.Count];
        foreach (var step in Stream(prompts, options, stop, cancellationToken))
            for (int r = 0; r < tokens.Length; r++)
            {
                if (step.TokenIds[r] >= 0) tokens[r].Add(step.TokenIds[r]);
                if (step.Finished[r] is { } reason) reasons[r] = reason;
            }
        return tokens.Select((t, r) => new GenerationResult(t, reasons[r], prompts[r].Count)).ToArray();
    }

    /// <summary>
    /// Generates step by step: each item holds one new id per row (-1 for rows already finished). Ends when every row has
    /// finished (EOS id, <see cref="GenerationOptions.MaxNewTokens"/>, or <paramref name="stop"/>). Enumerating again
    /// starts over. Device memory (the caches) is held until the enumeration ends or is disposed.
    /// </summary>
    /// <exception cref="ArgumentException">No prompts, an empty prompt, or an id outside the vocabulary.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (checked before each step).</exception>
    public IEnumerable<GenerationStep> Stream(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, Func<int, int, bool>? stop = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        CheckPrompts(prompts, VocabSize);
        return StreamCore(prompts, options, stop, cancellationToken);
    }

    private static void CheckPrompts(IReadOnlyList<IReadOnlyList<int>> prompts, long vocab)
    {
        if (prompts.Count == 0) throw new ArgumentException("Generation needs at least one prompt.", nameof(prompts));
        for (int r = 0; r < prompts.Count; r++)
        {
            if (prompts[r] is null || prompts[r].Count == 0) throw new ArgumentException($"Prompt {r} is empty: a prompt needs at least one token.",
                nameof(prompts));
            foreach (int id in prompts[r])
                if (id < 0 || id >= vocab) throw new ArgumentException($"Prompt {r} holds token id {id}, outside the vocabulary [0, {vocab}).",
                    nameof(prompts));
        }
    }

    private IEnumerable<GenerationStep> StreamCore(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, Func<int, int, bool>? stop,
        CancellationToken cancellationToken)
    {
        int rows = prompts.Count, width = prompts.Max(p => p.Count);
        var eos = new HashSet<int>(options.EosTokenIds ?? Array.Empty<int>());
        var first = _stages[0];
        var caches = new List<KvCache>();
        Tensor? logits = null, nextPositions = null, input = null, increment = null;   // live across yields: owned here, freed in finally
        try
        {
            foreach (var stage in _stages) caches.Add(new KvCache(stage, rows, width + options.MaxNewTokens));
            using var sampler = new TokenSampler(options, _stages[^1].Device, rows, VocabSize);
            using (no_grad())
            using (var scope = NewDisposeScope())
            {
                var (ids, mask, positions) = LeftPad(prompts, width, options.PadTokenId);
                bool padded = prompts.Any(p => p.Count < width);
                var device = first.Device;
                var deviceIds = ids.to(device);
                if (padded)
                    foreach (var c in caches) c.SetPromptMask(mask.to(c.Device));
                sampler.Observe(deviceIds.to(_stages[^1].Device), padded ? mask.to(_stages[^1].Device) : null);
                logits = Forward(caches, deviceIds, positions.to(device)).DetachFromDisposeScope();
                nextPositions = tensor(prompts.Select(p => (long)p.Count).ToArray(), dtype: ScalarType.Int64).view(rows, 1).to(device).DetachFromDisposeScope();
                increment = ones_like(nextPositions).DetachFromDisposeScope();
            }
            var finished = new bool[rows];
            var counts = new int[rows];
            for (int step = 0; ; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var ids = new int[rows];
                var reasons = new FinishReason?[rows];
                using (no_grad())
                using (var scope = NewDisposeScope())
                {
                    OnLogits?.Invoke(logits);
                    var next = sampler.Next(logits!);                                                   // [B] on the last stage's device
                    logits!.Dispose();
                    logits = null;
                    var host = next.cpu().data<long>().ToArray();                                       // the one host read per step
                    for (int r = 0; r < rows; r++)
                    {
                        if (finished[r]) { ids[r] = -1; continue; }
                        int id = (int)host[r];
                        ids[r] = id;
                        counts[r]++;
                        if (eos.Contains(id)) reasons[r] = FinishReason.EndOfSequence;
                        else if (stop?.Invoke(r, id) == true) reasons[r] = FinishReason.Stop;
                        else if (counts[r] >= options.MaxNewTokens) reasons[r] = FinishReason.Length;
                        finished[r] = reasons[r] is not null;
                    }
                    bool anyFinished = finished.Any(f => f);
                    input = (anyFinished
                        ? tensor(ids.Select((id, r) => finished[r] ? (long)options.PadTokenId : id).ToArray(), dtype: ScalarType.Int64).to(first.Device)
                        : next.to(first.Device)).view(rows, 1).DetachFromDisposeScope();
                    sampler.Observe(next.view(rows, 1));
                }
                yield return new GenerationStep(step, ids, reasons);
                if (finished.All(f => f)) break;
                using (no_grad())
                using (var scope = NewDisposeScope())
                {
                    logits = Forward(caches, input, nextPositions!).DetachFromDisposeScope();
                    input.Dispose();
                    input = null;
                    nextPositions!.add_(increment!, Scalars.One);
                }
            }
        }
        finally
        {
            logits?.Dispose();
            input?.Dispose();
            nextPositions?.Dispose();
            increment?.Dispose();
            foreach (var c in caches) c.Dispose();
        }
    }

    /// <summary>Host tensors [B,W]: left-padded ids, the mask (1 = real) and per-row positions (0 at each row's first real token; 0 on padding).</summary>
    private static (Tensor Ids, Tensor Mask, Tensor Positions) LeftPad(IReadOnlyList<IReadOnlyList<int>> prompts, int width, int pad)
    {
        int rows = prompts.Count;
        var ids = new long[rows * width];
        var mask = new long[rows * width];
        var positions = new long[rows * width];
        for (int r = 0; r < rows; r++)
        {
            int offset = width - prompts[r].Count;
            for (int j = 0; j < width; j++)
            {
                bool real = j >= offset;
                ids[r * width + j] = real ? prompts[r][j - offset] : pad;
                mask[r * width + j] = real ? 1 : 0;
                positions[r * width + j] = real ? j - offset : 0;
            }
        }
        return (tensor(ids, new long[] { rows, width }), tensor(mask, new long[] { rows, width }), tensor(positions, new long[] { rows, width }));
    }

    /// <summary>One forward of S new tokens per row through every stage; float32 logits [B,V] of each row's last position.</summary>
    internal Tensor Forward(IReadOnlyList<KvCache> caches, Tensor ids, Tensor positions)
    {
        using var scope = NewDisposeScope();
        Tensor? hidden = null;
        for (int i = 0; i < _stages.Length; i++)
        {
            var stage = _stages[i];
            var device = stage.Device;
            var batch = i == 0
                ? new CausalLMBatch { InputIds = ids, PositionIds = positions }
                : new CausalLMBatch { HiddenStates = hidden!.to(device), PositionIds = positions.to(device) };
            hidden = stage.Model.Forward(batch, caches[i]).HiddenStates;
        }
        var last = hidden!.narrow(1, hidden.shape[1] - 1, 1);                                         // [B,1,H]
        return _stages[^1].lm_head!.forward(last).squeeze(1).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
