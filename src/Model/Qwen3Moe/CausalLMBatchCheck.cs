using Microsoft.ML.Qwen3Moe.Blocks;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Shape, dtype and range checks on a <see cref="CausalLMBatch"/> before it reaches a kernel, so that a bad batch gives an
/// error naming the tensor and the shapes instead of a libtorch message (or, on CUDA, a lost context).
/// </summary>
internal static class CausalLMBatchCheck
{
    /// <summary>Throws when the batch is empty, a tensor has the wrong rank or dtype, the [B,S] tensors disagree, or a label is out of range.</summary>
    /// <param name="batch">The batch.</param>
    /// <param name="vocabSize">Labels other than -100 must lie in [0, vocabSize).</param>
    /// <exception cref="ArgumentException">The message names the tensor and its shape (and the shape it must match).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A label is outside the vocabulary.</exception>
    public static void Validate(CausalLMBatch batch, long vocabSize)
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
        if (batch.Labels is not null)
        {
            SameRows(batch.Labels, nameof(CausalLMBatch.Labels), lead, leadName, exactRank: 2);
            Int64(batch.Labels, nameof(CausalLMBatch.Labels));
            LabelRange(batch.Labels, vocabSize);
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
        if (!ok) throw new ArgumentException($"{name} has shape {Shape(t)} but {leadName} has shape {Shape(lead)}: {name} must be [{lead.shape[0]}, {lead.shape[1]}{(exactRank is null ? ", ..." : "")}].", "batch");
    }

    /// <summary>Range check of host labels (free there); executors call it before labels move to a device.</summary>
    internal static void LabelRange(Tensor labels, long vocabSize)
    {
        // device labels were checked on the host before they moved; empty or mistyped labels are reported by Validate
        if (labels.device_type != DeviceType.CPU || labels.numel() == 0 || labels.dtype != ScalarType.Int64) return;
        using var scope = NewDisposeScope();
        var targets = labels.masked_fill(labels.eq(Scalars.IgnoreIndex), Scalars.Zero); // one small host read per batch
        var range = stack(new[] { targets.min(), targets.max() }).cpu().data<long>().ToArray();
        if (range[0] < 0 || range[1] >= vocabSize)
            throw new ArgumentOutOfRangeException("batch", $"Labels holds {(range[0] < 0 ? range[0] : range[1])}, outside the vocabulary [0, {vocabSize}) and not the ignore label -100.");
    }

    private static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
}
