using System.Text;

namespace Microsoft.ML.Qwen3Moe.Generation;

/// <summary>
/// Splits a streamed reply into reasoning (inside <c>&lt;think&gt;…&lt;/think&gt;</c>) and answer pieces, dropping the
/// tags and the newlines that open each part; a tag split across pieces is held back until it is whole.
/// </summary>
internal sealed class ReasoningSplitter
{
    private const string Open = "<think>", Close = "</think>";
    private readonly StringBuilder _pending = new();
    private bool _reasoning, _partStarted = true;   // newlines are trimmed only right after a tag

    /// <summary>Adds text; returns the pieces it completes, each marked reasoning or not.</summary>
    public List<(string Text, bool Reasoning)> Push(string text, bool final = false)
    {
        var pieces = new List<(string, bool)>();
        _pending.Append(text);
        while (true)
        {
            string pending = _pending.ToString();
            string tag = _reasoning ? Close : Open;
            int at = pending.IndexOf(tag, StringComparison.Ordinal);
            if (at >= 0)
            {
                Emit(pieces, pending[..at]);
                _pending.Remove(0, at + tag.Length);
                _reasoning = !_reasoning;
                _partStarted = false;
                continue;
            }
            int hold = 0;
            if (!final)
                for (int k = Math.Min(tag.Length - 1, pending.Length); k > 0; k--)
                    if (pending.AsSpan(pending.Length - k).SequenceEqual(tag.AsSpan(0, k))) { hold = k; break; }
            Emit(pieces, pending[..^hold]);
            _pending.Remove(0, pending.Length - hold);
            return pieces;
        }
    }

    private void Emit(List<(string, bool)> pieces, string text)
    {
        if (!_partStarted) text = text.TrimStart('\n');
        if (text.Length == 0) return;
        _partStarted = true;
        pieces.Add((text, _reasoning));
    }
}
