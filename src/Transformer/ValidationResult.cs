namespace Microsoft.ML.Qwen3Moe;

/// <summary>One validation pass of a fine-tune (<c>Options.ValidationSet</c>).</summary>
/// <param name="Step">Optimizer steps done when it ran.</param>
/// <param name="Epoch">Epoch (1-based) of the last step done.</param>
/// <param name="Loss">Token-weighted mean negative log-likelihood of the validation set (nats per token; no auxiliary loss).</param>
/// <param name="Tokens">Predicted tokens of the validation set.</param>
/// <param name="EpochEnd">Whether it ran because an epoch ended (or the training did), rather than by <c>ValidationEveryNSteps</c>.</param>
public readonly record struct ValidationResult(int Step, long Epoch, double Loss, long Tokens, bool EpochEnd);
