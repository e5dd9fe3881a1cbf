using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Execution;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Scoring;

/// <summary>
/// Scores token sequences with the forward-only path (<see cref="IStepExecutor.Score"/>: no autograd, per-token losses
/// computed in chunks so full-vocabulary logits never exist for the whole batch) and keeps the MoE routing counts of
/// the current pass. One forward at a time: ML.NET may read a data view from several threads, and a GPU model must not
/// run concurrent forwards, so every forward takes the same lock.
/// </summary>
internal sealed class BatchScorer
{
    private readonly IStepExecutor _executor;
    private readonly CausalLMBatchBuilder _builder;
    private readonly object _gate = new();
    private readonly int[] _sparseLayers;
    private long[][] _routing;
    private long _tokensRouted;

    public BatchScorer(IStepExecutor executor, int padTokenId, int maxLength, int padToMultipleOf = 1)
    {
        _executor = executor;
        _builder = new CausalLMBatchBuilder(padTokenId, maxLength, padToMultipleOf);
        _sparseLayers = executor.Stages
            .SelectMany(s => Enumerable.Range(s.Model.FirstLayer, s.Model.EndLayer - s.Model.FirstLayer).Where(s.Parameters.Model.IsSparseLayer))
            .ToArray();
        _routing = NewRouting();
    }

    /// <summary>Most tokens scored per row.</summary>
    public int MaxLength => _builder.MaxLength;

    /// <summary>Starts a new scoring pass: the routing statistics count from here.</summary>
    public void BeginPass()
    {
        lock (_gate)
        {
            _routing = NewRouting();
            _tokensRouted = 0;
        }
    }

    /// <summary>A snapshot of the routing counts since <see cref="BeginPass"/>.</summary>
    public MoeRoutingStatistics RoutingStatistics()
    {
        lock (_gate)
            return new MoeRoutingStatistics(_sparseLayers.ToArray(), _routing.Select(r => (IReadOnlyList<long>)r.ToArray()).ToArray(), _tokensRouted);
    }

    /// <summary>Scores each sequence (cut to <see cref="MaxLength"/>). Rows of fewer than 2 tokens get empty scores without a forward.</summary>
    public RowScore[] Score(IReadOnlyList<int[]> sequences)
    {
        var result = new RowScore[sequences.Count];
        var batchRows = new List<int>();
        for (int i = 0; i < sequences.Count; i++)
        {
            int kept = Math.Min(sequences[i].Length, MaxLength);
            if (kept < 2) result[i] = RowScore.From(Array.Empty<float>(), kept);
            else batchRows.Add(i);
        }
        if (batchRows.Count == 0) return result;

        lock (_gate)
        {
            using var scope = NewDisposeScope();
            foreach (var stage in _executor.Stages)
            {
                stage.eval();
                stage.ResetMoeStats();
            }
            var (batch, lengths) = _builder.Build(batchRows.Select(i => (IReadOnlyList<int>)sequences[i]).ToList());
            var nll = _executor.Score(batch).to(ScalarType.Float32).cpu();
            int columns = (int)nll.shape[1];
            var values = nll.data<float>().ToArray();
            for (int k = 0; k < batchRows.Count; k++)
            {
                var logps = new float[lengths[k] - 1];
                for (int t = 0; t < logps.Length; t++) logps[t] = -values[k * columns + t];
                result[batchRows[k]] = RowScore.From(logps, lengths[k]);
            }
            AccumulateRouting(lengths.Sum());
        }
        return result;
    }

    private void AccumulateRouting(long tokens)
    {
        int layer = 0;
        foreach (var stage in _executor.Stages)
        {
            using var counts = stage.MoeTokensPerExpert;
            using var cpu = counts.to(ScalarType.Int64).cpu();
            var flat = cpu.data<long>().ToArray();
            int rows = (int)cpu.shape[0], experts = rows == 0 ? 0 : (int)cpu.shape[1];
            for (int r = 0; r < rows; r++, layer++)
                for (int e = 0; e < experts; e++) _routing[layer][e] += flat[r * experts + e];
        }
        _tokensRouted += tokens;
    }

    private long[][] NewRouting()
    {
        int experts = _executor.Stages[0].Parameters.Model.Layer.NumExperts;
        return _sparseLayers.Select(_ => new long[experts]).ToArray();
    }
}
