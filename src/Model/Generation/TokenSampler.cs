using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>
/// Picks the next token of every row on the device from float32 logits [B,V]: repetition penalty, then greedy argmax or
/// temperature / top-k / top-p / min-p and a draw from its own seeded <see cref="torch.Generator"/>. Nothing is read back
/// to the host here. Every constant is a <see cref="Scalar"/> owned for the sampler's lifetime (never a temporary
/// conversion that a finalizer could free during the native call).
/// </summary>
internal sealed class TokenSampler : IDisposable
{
    private readonly GenerationOptions _options;
    private readonly Generator? _generator;
    private readonly Tensor? _seen;          // [B,V] bool: tokens already in the row (repetition penalty)
    private readonly Tensor? _trueRows;      // [B,1] bool ones, the scatter source for _seen
    private readonly Scalar _zero = Scalars.Of(0.0), _negInf = Scalars.Of(double.NegativeInfinity);
    private readonly Scalar _penalty, _temperature, _oneMinusTopP, _minP;

    public TokenSampler(GenerationOptions options, Device device, long batch, long vocab)
    {
        _options = options;
        _penalty = Scalars.Of(options.RepetitionPenalty);
        _temperature = Scalars.Of(options.Temperature);
        _oneMinusTopP = Scalars.Of(1.0 - options.TopP);
        _minP = Scalars.Of(options.MinP);
        if (options.RepetitionPenalty != 1f)
        {
            _seen = zeros(new[] { batch, vocab }, dtype: ScalarType.Bool, device: device).DetachFromDisposeScope();
            _trueRows = ones(new[] { batch, 1L }, dtype: ScalarType.Bool, device: device).DetachFromDisposeScope();
        }
        if (options.DoSample)
            _generator = new Generator(unchecked((ulong)(options.Seed ?? Random.Shared.NextInt64())), device);
    }

    /// <summary>
    /// Records tokens [B,S] as present in their rows. Where <paramref name="mask"/> (left padding: the last column is real)
    /// is 0, the row's last token is recorded instead, so padding never counts.
    /// </summary>
    public void Observe(Tensor ids, Tensor? mask = null)
    {
        if (_seen is null) return;
        using var scope = NewDisposeScope();
        var real = mask is null ? ids : where(mask.to(ScalarType.Bool), ids, ids.narrow(1, ids.shape[1] - 1, 1).expand_as(ids));
        _seen.scatter_(1, real, _trueRows!.expand(ids.shape[0], ids.shape[1]));
    }

    /// <summary>The next id of each row [B] int64, on the logits' device.</summary>
    public Tensor Next(Tensor logits) // [B,V] float32 -> [B]
    {
        using var scope = NewDisposeScope();
        var scores = logits;
        if (_seen is not null)
        {
            var penalized = where(scores.lt(_zero), scores.mul(_penalty), scores.div(_penalty));
            scores = where(_seen, penalized, scores);
        }
        if (!_options.DoSample) return scores.argmax(-1).MoveToOuterDisposeScope();
        scores = scores.div(_temperature);
        long vocab = scores.shape[^1];
        if (_options.TopK > 0 && _options.TopK < vocab)
        {
            var (values, _) = scores.topk(_options.TopK, -1);
            scores = scores.masked_fill(scores.lt(values.narrow(-1, _options.TopK - 1, 1)), _negInf);
        }
        if (_options.TopP < 1f)
        {
            var (sorted, order) = scores.sort(-1, descending: false);
            var remove = sorted.softmax(-1).cumsum(-1).le(_oneMinusTopP);                    // ascending: the tail to drop
            remove.narrow(-1, vocab - 1, 1).zero_();                                   // always keep the most likely
            scores = scores.masked_fill(zeros_like(remove).scatter_(-1, order, remove), _negInf);
        }
        if (_options.MinP > 0f)
        {
            var probs = scores.softmax(-1);
            scores = scores.masked_fill(probs.lt(probs.amax(new long[] { -1 }, keepdim: true).mul(_minP)), _negInf);
        }
        return scores.softmax(-1).multinomial(1, false, _generator).squeeze(1).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _generator?.Dispose();
        _seen?.Dispose();
        _trueRows?.Dispose();
        foreach (var s in new[] { _zero, _negInf, _penalty, _temperature, _oneMinusTopP, _minP }) s.Dispose();
    }
}
