namespace Microsoft.ML.Qwen3Moe;

/// <summary>How <see cref="Qwen3MoeEstimator"/> fine-tunes.</summary>
public enum Qwen3MoeFineTuning
{
    /// <summary>Every trainable parameter of the model updates (the default; see <c>TrainableParameters</c>).</summary>
    Full,

    /// <summary>
    /// LoRA: the base model stays frozen and only low-rank adapters (and modules the targets train fully) update, so a
    /// 30 B model fine-tunes on one GPU. Needs a <c>ModelPath</c>: the saved model refers to that base folder.
    /// </summary>
    LoRA,
}
