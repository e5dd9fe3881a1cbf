using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Execution;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// The validation rows of a fit, tokenized once, and their token-weighted mean NLL under the current weights (the
/// forward-only path, batch by batch). The pass leaves the training state as it found it: the stages' MoE counts
/// (saved in training checkpoints) are put back and the stages return to training mode, and it draws no random numbers,
/// so a run with validation trains exactly like one without.
/// </summary>
internal sealed class ValidationSet
{
    private readonly IReadOnlyList<int[]> _sequences;
    private readonly CausalLMBatchBuilder _builder;
    private readonly int _batchSize;

    public ValidationSet(TrainingCorpus corpus, int padTokenId, int maxLength, int batchSize, int padToMultipleOf = 1)
    {
        _sequences = corpus.Sequences;
        _builder = new CausalLMBatchBuilder(padTokenId, maxLength, padToMultipleOf);
        _batchSize = batchSize;
        Tokens = corpus.Sequences.Sum(s => (long)s.Length - 1);
    }

    /// <summary>Predicted tokens (every token of a row after its first).</summary>
    public long Tokens { get; }

    /// <summary>Rows that have a token to predict.</summary>
    public int Rows => _sequences.Count;

    /// <summary>Mean NLL per predicted token of the whole set; checks <paramref name="cancellation"/> before each batch.</summary>
    public double Loss(IStepExecutor executor, TrainingCancellation cancellation)
    {
        using var scope = NewDisposeScope();
        var moeCounts = MoeCounts(executor).Select(b => b.clone()).ToList();
        double nll = 0;
        try
        {
            foreach (var stage in executor.Stages) stage.eval();
            for (int start = 0; start < _sequences.Count; start += _batchSize)
            {
                cancellation.ThrowIfCanceled("during a validation pass");
                using var batchScope = NewDisposeScope();
                var rows = _sequences.Skip(start).Take(_batchSize).Select(s => (IReadOnlyList<int>)s).ToList();
                var (batch, _) = _builder.Build(rows);
                nll += executor.Score(batch).to(ScalarType.Float64).sum().item<double>();
            }
        }
        finally
        {
            using (no_grad())
                foreach (var (live, saved) in MoeCounts(executor).Zip(moeCounts)) live.copy_(saved);
            foreach (var stage in executor.Stages) stage.train();
        }
        return Tokens > 0 ? nll / Tokens : double.NaN;
    }

    private static IEnumerable<Tensor> MoeCounts(IStepExecutor executor) =>
        executor.Stages.SelectMany(s => s.named_buffers()).Where(b => b.name.EndsWith("tokens_per_expert", StringComparison.Ordinal)).Select(b => b.buffer);
}
