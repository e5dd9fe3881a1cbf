using Microsoft.ML.Qwen3Moe.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Shape, dtype and range checks on a <see cref="CausalLMBatch"/> before it reaches a kernel, so that a bad batch gives an
/// error naming the tensor and the shapes instead of a libtorch message (or, on CUDA, a lost context). The range of the
/// token ids and labels is read once, on the host, where a batch enters an executor (<see cref="Validate"/>); every
/// stage's forward checks only the metadata (<see cref="Structure"/>), which never reads a device.
/// </summary>
internal static class CausalLMBatchCheck
{
    /// <summary>
    /// <see cref="Structure"/>, then the range of the host token ids and labels (one small host read; tensors already on an
    /// accelerator were checked, or built in range, before they moved). Executors call it once per batch, before any
    /// tensor moves to a device.
    /// </summary>
    /// <param name="batch">The batch.</param>
    /// <param name="vocabSize">Token ids, and labels other than <see cref="CausalLMLoss.IgnoreIndex"/>, must lie in [0, vocabSize).</param>
    /// <exception cref="ArgumentException">The message names the tensor and its shape (and the shape it must match).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id or a label is outside the vocabulary; the message names it.</exception>
    public static void Validate(CausalLMBatch batch, long vocabSize)
    {
        Structure(batch);
        if (batch.InputIds is { } ids && ids.device_type == DeviceType.CPU)
        {
            var (min, max) = Range(ids);
            if (min < 0 || max >= vocabSize)
                throw new ArgumentOutOfRangeException(nameof(batch), $"Token id {(min < 0 ? min : max)} is outside the vocabulary [0, {vocabSize}).");
        }
        if (batch.Labels is { } labels && labels.device_type == DeviceType.CPU)
        {
            using var scope = NewDisposeScope();
            var (min, max) = Range(labels.masked_fill(labels.eq(Scalars.IgnoreIndex), Scalars.Zero));
            if (min < 0 || max >= vocabSize)
                throw new ArgumentOutOfRangeException(nameof(batch),
                    $"Labels holds {(min < 0 ? min : max)}, outside the vocabulary [0, {vocabSize}) and not the ignore label {CausalLMLoss.IgnoreIndex}.");
        }
    }

    /// <summary>Throws when the batch is empty, a tensor has the wrong rank or dtype, or the [B,S] tensors disagree. Reads no values.</summary>
    /// <exception cref="ArgumentException">The message names the tensor and its shape (and the shape it must match).</exception>
    public static void Structure(CausalLMBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var (leadName, lead) = batch.InputIds is not null ? (nameof(CausalLMBatch.InputIds), batch.InputIds)
            : batch.HiddenStates is not null ? (nameof(CausalLMBatch.HiddenStates), batch.HiddenStates)
            : throw new ArgumentException("The batch has neither InputIds nor HiddenStates.", nameof(batch));
        if (batch.InputIds is not null)
        {
            Rank(batch.InputIds, nameof(CausalLMBatch.InputIds), 2, "[batch, sequence]");
            Int64(batch.InputIds, nameof(CausalLMBatch.InputIds));
        }
        if (batch.HiddenStates is not null) Rank(batch.HiddenStates, nameof(CausalLMBatch.HiddenStates), 3, "[batch, sequence, hidden]");
        if (lead.shape[0] == 0 || lead.shape[1] == 0)
            throw new ArgumentException($"Empty batch: {leadName} has shape {Shape(lead)}; a batch needs at least one row and one token.", nameof(batch));
        if (batch.InputIds is not null && batch.HiddenStates is not null) SameRows(batch.HiddenStates, nameof(CausalLMBatch.HiddenStates), lead, leadName);
        if (batch.AttentionMask is not null) SameRows(batch.AttentionMask, nameof(CausalLMBatch.AttentionMask), lead, leadName, exactRank: 2);
        if (batch.PositionIds is not null)
        {
            SameRows(batch.PositionIds, nameof(CausalLMBatch.PositionIds), lead, leadName, exactRank: 2);
            Int64(batch.PositionIds, nameof(CausalLMBatch.PositionIds));
        }
        if (batch.DocumentIds is not null)
        {
            SameRows(batch.DocumentIds, nameof(CausalLMBatch.DocumentIds), lead, leadName, exactRank: 2);
            Int64(batch.DocumentIds, nameof(CausalLMBatch.DocumentIds));
        }
        if (batch.Labels is not null)
        {
            SameRows(batch.Labels, nameof(CausalLMBatch.Labels), lead, leadName, exactRank: 2);
            Int64(batch.Labels, nameof(CausalLMBatch.Labels));
        }
    }

    private static void Rank(Tensor t, string name, int rank, string layout)
    {
        if (t.dim() != rank) throw new ArgumentException($"{name} must be {rank}-D {layout}; got shape {Shape(t)}.", "batch");
    }

    private static void Int64(Tensor t, string name)
    {
        if (t.dtype != ScalarType.Int64) throw new ArgumentException($"{name} must be int64; got {t.dtype} (shape {Shape(t)}).", "batch");
    }

    /// <summary><paramref name="t"/> must be [B,S] (or, without <paramref name="exactRank"/>, start with [B,S]) like the lead tensor.</summary>
    private static void SameRows(Tensor t, string name, Tensor lead, string leadName, int? exactRank = null)
    {
        bool ok = (exactRank is null || t.dim() == exactRank) && t.dim() >= 2 && t.shape[0] == lead.shape[0] && t.shape[1] == lead.shape[1];
        if (!ok) throw new ArgumentException($"{name} has shape {Shape(t)} but {leadName} has shape {Shape(lead)}: {name} must be [{lead.shape[0]}, " +
            $"{lead.shape[1]}{(exactRank is null ? ", ..." : "")}].", "batch");
    }

    /// <summary>Minimum and maximum of a non-empty int64 host tensor, in one read.</summary>
    private static (long Min, long Max) Range(Tensor t)
    {
        using var scope = NewDisposeScope();
        var range = stack(new[] { t.min(), t.max() }).data<long>().ToArray();
        return (range[0], range[1]);
    }

    private static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
}
