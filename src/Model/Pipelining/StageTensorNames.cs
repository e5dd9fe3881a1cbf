namespace Microsoft.ML.Qwen3Moe.Pipelining;

/// <summary>Names of the tensors that stages exchange, as the seed's stage input/output dictionaries spell them.</summary>
public static class StageTensorNames
{
    /// <summary>[b,S] int64 token ids, input of the first stage.</summary>
    public const string InputIds = "input_ids";

    /// <summary>[b,S,H] hidden states, output of every stage and input of every stage but the first.</summary>
    public const string HiddenStates = "hidden_states";

    /// <summary>[entries,b,H] hidden-state snapshot (snapshot mode Mean only).</summary>
    public const string HiddenStatesSnapshot = "hidden_states_snapshot";

    /// <summary>[b,S] float32 per-token negative log-likelihood, output of the last stage (the seed's key <c>logps</c>).</summary>
    public const string TokenNll = "logps";
}
