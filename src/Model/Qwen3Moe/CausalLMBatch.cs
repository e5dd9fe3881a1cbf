using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>Inputs of one forward pass of a (stage of a) <see cref="Qwen3MoeForCausalLM"/>. The caller owns the tensors.</summary>
public sealed record CausalLMBatch
{
    /// <summary>[B,S] int64 global token ids; required on the first stage.</summary>
    public Tensor? InputIds { get; init; }

    /// <summary>[B,S,H] hidden states from the previous stage; required on the other stages.</summary>
    public Tensor? HiddenStates { get; init; }

    /// <summary>
    /// [B,S] int64 positions; null means 0..S-1 on every row, or, with <see cref="DocumentIds"/>, positions restarting at 0
    /// at the first token of each document (derived on the device).
    /// </summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>
    /// [B,S] int64 document of each token, for packed rows (several documents concatenated in one row, as HF TRL's packing
    /// with position ids): a document is a run of equal ids, and a token attends only to earlier tokens of its own
    /// document (a block-diagonal causal mask, built on the device once per forward and shared by every layer). Padding
    /// at the end of a row takes an id of its own (and 0 in <see cref="AttentionMask"/>). Labels must not cross
    /// documents (<see cref="CausalLMLoss.IgnoreIndex"/> at each document's last token). Not for a KV-cache forward.
    /// Null (default): one document per row.
    /// </summary>
    public Tensor? DocumentIds { get; init; }

    /// <summary>
    /// [B,S] 1 for real tokens, 0 for padding; null means all real. With right padding, causal attention already keeps
    /// padding out of real positions, so the mask only changes MoE statistics and the auxiliary loss, plus attention
    /// for left padding.
    /// </summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>
    /// True when, in every row, the padding (<see cref="AttentionMask"/> 0) comes after all real tokens. Attention then
    /// needs no mask (causality already hides later positions), so SDPA keeps its flash kernel; the mask still keeps
    /// padding out of the MoE statistics and the load-balancing loss. Default false (the mask is applied in attention).
    /// </summary>
    public bool RightPadded { get; init; }

    /// <summary>[B,S] int64 targets aligned with the inputs (not shifted), -100 where there is none; gives <see cref="CausalLMOutput.TokenNll"/>.</summary>
    public Tensor? Labels { get; init; }

    /// <summary>Whether the last stage also returns the full logits (costly for large vocabularies). Default false.</summary>
    public bool ReturnLogits { get; init; }

    /// <summary>Whether every intermediate hidden state is returned (embedding output and each layer output). Default false.</summary>
    public bool OutputHiddenStates { get; init; }

    /// <summary>
    /// [entries, B, H] snapshot received from the previous stage (see <see cref="CausalLMOutput.HiddenStatesSnapshot"/>);
    /// null on the first stage. Used only when the model's snapshot mode is not <see cref="Blocks.HiddenStatesAggregationMode.No"/>.
    /// </summary>
    public Tensor? HiddenStatesSnapshot { get; init; }

    /// <summary>[B,S] weights of the tokens in the snapshot means (1 = include); required in snapshot mode Mean, on every stage.</summary>
    public Tensor? HiddenStatesAggregationMask { get; init; }

    /// <summary>
    /// The same batch with every tensor passed through <paramref name="rows"/> (the snapshot, whose batch dimension is 1,
    /// through <paramref name="snapshot"/>, default <paramref name="rows"/>) and every flag kept: the one place that knows
    /// all the fields, for moving or slicing a batch.
    /// </summary>
    internal CausalLMBatch Map(Func<Tensor, Tensor> rows, Func<Tensor, Tensor>? snapshot = null) => this with
    {
        InputIds = InputIds is null ? null : rows(InputIds),
        HiddenStates = HiddenStates is null ? null : rows(HiddenStates),
        PositionIds = PositionIds is null ? null : rows(PositionIds),
        DocumentIds = DocumentIds is null ? null : rows(DocumentIds),
        AttentionMask = AttentionMask is null ? null : rows(AttentionMask),
        Labels = Labels is null ? null : rows(Labels),
        HiddenStatesSnapshot = HiddenStatesSnapshot is null ? null : (snapshot ?? rows)(HiddenStatesSnapshot),
        HiddenStatesAggregationMask = HiddenStatesAggregationMask is null ? null : rows(HiddenStatesAggregationMask),
    };
}
