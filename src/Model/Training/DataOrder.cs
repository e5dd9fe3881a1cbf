namespace Microsoft.ML.Qwen3Moe.Training;

/// <summary>
/// Reproducible shuffles derived from (seed, epoch) alone, so a resumed run needs only its <see cref="Checkpoints.DataPosition"/>
/// to read the same batches as the interrupted one: no random-generator state to save.
/// </summary>
/// <remarks>
/// Fisher-Yates driven by SplitMix64 (fixed here, so the order does not depend on the .NET or libtorch version).
/// </remarks>
public static class DataOrder
{
    /// <summary>A permutation of <c>0..count-1</c> for <paramref name="epoch"/>; the same arguments always give the same order.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> or <paramref name="epoch"/> is negative.</exception>
    public static int[] Permutation(int count, long seed, long epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        var order = new int[count];
        for (int i = 0; i < count; i++) order[i] = i;
        ulong state = Mix((ulong)seed) ^ Mix((ulong)epoch + 0x632BE59BD9B4E019UL);
        for (int i = count - 1; i > 0; i--)
        {
            state += 0x9E3779B97F4A7C15UL;
            int j = (int)(Mix(state) % (ulong)(i + 1)); // modulo bias below 2^-32 for any int count
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
