namespace Microsoft.ML.Qwen3Moe.Training.Checkpoints;

/// <summary>
/// Where the data stream stands, saved with a training checkpoint so a resumed run reads the same batches the
/// interrupted run would have read next. The library does not interpret it beyond checking it is not negative.
/// </summary>
/// <remarks>
/// Save the position of the <em>next</em> batch to read. If the data order is shuffled, derive it from a seed and the
/// epoch (see <see cref="DataOrder"/>) so that the epoch and batch index are all a resume needs.
/// </remarks>
/// <param name="Epoch">0-based epoch of the next batch.</param>
/// <param name="BatchIndex">0-based index, within <paramref name="Epoch"/>, of the next batch.</param>
/// <param name="Cursor">Anything else the caller needs to find its place (an opaque string; null for none).</param>
public sealed record DataPosition(long Epoch, long BatchIndex, string? Cursor = null)
{
    /// <summary>The start of the data: epoch 0, batch 0.</summary>
    public static DataPosition Start { get; } = new(0, 0);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> when the epoch or batch index is negative.</summary>
    public void Validate()
    {
        if (Epoch < 0) throw new ArgumentOutOfRangeException(nameof(Epoch), Epoch, "The data position's epoch must not be negative.");
        if (BatchIndex < 0) throw new ArgumentOutOfRangeException(nameof(BatchIndex), BatchIndex, "The data position's batch index must not be negative.");
    }
}
