namespace TextScoring;

/// <summary>A problem with the user's input, reported as one line without a stack trace.</summary>
internal sealed class UserError(string message, Exception? inner = null) : Exception(message, inner);
