namespace Microsoft.ML.Qwen3Moe.Lora;

/// <summary>Which parts of the model a LoRA adapter reaches (flags; combine with <c>|</c>).</summary>
[Flags]
public enum LoraTargets
{
    /// <summary>Nothing.</summary>
    None = 0,

    /// <summary>Low-rank adapters on the attention projections <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>.</summary>
    Attention = 1,

    /// <summary>
    /// Per-expert low-rank adapters on the stacked routed experts (<c>mlp.experts.gate_up_proj</c> [E,2I,H] and
    /// <c>mlp.experts.down_proj</c> [E,H,I]), applied through the experts' grouped matmul (PEFT's <c>target_parameters</c>).
    /// </summary>
    Experts = 2,

    /// <summary>Low-rank adapters on the dense MLP projections (<c>gate_proj</c>, <c>up_proj</c>, <c>down_proj</c>) of the non-sparse layers.</summary>
    DenseMlp = 4,

    /// <summary>The routers (<c>mlp.gate</c>) train fully (PEFT's <c>modules_to_save</c>).</summary>
    Router = 8,

    /// <summary>The untied LM head (<c>lm_head</c>) trains fully (PEFT's <c>modules_to_save</c>); needs untied embeddings and one vocabulary split.</summary>
    LmHead = 16,

    /// <summary>The default: attention and routed experts.</summary>
    Default = Attention | Experts,
}
