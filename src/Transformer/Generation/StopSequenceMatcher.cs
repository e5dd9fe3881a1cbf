using System.Text;

namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>
/// Watches one row's generated text for stop sequences. Text that could still be the start of a stop sequence is held
/// back, so what <see cref="Append"/> releases never contains (part of) a stop sequence that later completes.
/// </summary>
internal sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private readonly StringBuilder _pending = new();

    public StopSequenceMatcher(IEnumerable<string> stops) => _stops = stops.ToArray();

    /// <summary>Whether a stop sequence was found (nothing more is released after it).</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds generated text; returns the text now safe to release (cut before a stop sequence when one completes).</summary>
    public string Append(string text)
    {
        if (Stopped) return string.Empty;
        _pending.Append(text);
        if (_stops.Length == 0) return Release(_pending.Length);
        string pending = _pending.ToString();
        int first = -1;
        foreach (var stop in _stops)
        {
            int at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first)) first = at;
        }
        if (first >= 0)
        {
            Stopped = true;
            var released = pending[..first];
            _pending.Clear();
            return released;
        }
        int hold = 0;
        foreach (var stop in _stops)
            for (int k = Math.Min(stop.Length - 1, pending.Length); k > hold; k--)
                if (pending.AsSpan(pending.Length - k).SequenceEqual(stop.AsSpan(0, k))) { hold = k; break; }
        return Release(pending.Length - hold);
    }

    /// <summary>Releases what is held back (at the end of generation).</summary>
    public string Flush()
    {
        if (Stopped) return string.Empty;
        return Release(_pending.Length);
    }

    private string Release(int count)
    {
        var s = _pending.ToString(0, count);
        _pending.Remove(0, count);
        return s;
    }
}
