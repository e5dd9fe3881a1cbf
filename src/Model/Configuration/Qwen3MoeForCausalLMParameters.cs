namespace Microsoft.ML.Qwen3Moe.Configuration;

/// <summary>The causal language model (the seed's <c>Qwen3MoEForCausalLMParameters</c>, plus HF's head and loss fields).</summary>
public sealed record Qwen3MoeForCausalLMParameters
{
    /// <summary>The backbone.</summary>
    public required Qwen3MoeParameters Model { get; init; }

    /// <summary>Whether the LM head shares the token-embedding table (HF <c>tie_word_embeddings</c>). Default false.</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Weight of the load-balancing loss in the training objective (HF <c>router_aux_loss_coef</c>). Default 0.001.</summary>
    public double RouterAuxLossCoefficient { get; init; } = 0.001;

    /// <summary>Standard deviation of HF's normal initialisation (HF <c>initializer_range</c>). Default 0.02.</summary>
    public double InitializerRange { get; init; } = 0.02;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid field.</summary>
    public void Validate()
    {
        Model.Validate();
        Require.That(RouterAuxLossCoefficient >= 0 && double.IsFinite(RouterAuxLossCoefficient), nameof(RouterAuxLossCoefficient), RouterAuxLossCoefficient,
            "must be a finite non-negative number.");
        Require.PositiveFinite(InitializerRange, nameof(InitializerRange));
        Require.That(!TieWordEmbeddings || Model.SplitVocabOrder.Count == 1, nameof(TieWordEmbeddings), TieWordEmbeddings,
            "tied embeddings need a single vocabulary split.");
    }
}
