using System.Reflection;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Whether a fit was asked to stop: by ML.NET (the host's cancellation, which ML.NET's own trainers poll with
/// <c>IHost.CheckAlive</c>) or by the caller's <see cref="CancellationToken"/> (<see cref="Qwen3MoeEstimator.Options.CancellationToken"/>).
/// </summary>
/// <remarks>
/// In ML.NET 5.0.1 the host's flag lives on an internal interface (<c>Microsoft.ML.Runtime.ICancelable.IsCanceled</c>,
/// set for every host of a context by the context's internal <c>CancelExecution</c>, which AutoML calls), and the public
/// <c>CheckAlive</c> helper is internal too; so the flag is read by reflection, resolved once. On an ML.NET without that
/// member only the token is honoured (a test pins the member).
/// </remarks>
internal sealed class TrainingCancellation
{
    private static readonly PropertyInfo? s_isCanceled =
        typeof(IHostEnvironment).Assembly.GetType("Microsoft.ML.Runtime.ICancelable")?.GetProperty("IsCanceled");

    private readonly IHostEnvironment _host;
    private readonly CancellationToken _token;

    public TrainingCancellation(IHostEnvironment host, CancellationToken token)
    {
        _host = host;
        _token = token;
    }

    /// <summary>Whether ML.NET's host cancellation can be read in this ML.NET version.</summary>
    internal static bool HostCancellationSupported => s_isCanceled is not null;

    /// <summary>Whether the host or the token asks to stop.</summary>
    public bool IsCanceled => _token.IsCancellationRequested || IsHostCanceled(_host);

    /// <summary>Throws <see cref="OperationCanceledException"/> (with the token when it was the one cancelled) when asked to stop.</summary>
    public void ThrowIfCanceled(string where)
    {
        if (!IsCanceled) return;
        throw Canceled(where);
    }

    /// <summary>The exception a cancelled fit ends with.</summary>
    public OperationCanceledException Canceled(string where) =>
        new($"Fine-tuning was cancelled {where}.", _token.IsCancellationRequested ? _token : CancellationToken.None);

    private static bool IsHostCanceled(IHostEnvironment host) =>
        s_isCanceled is not null && s_isCanceled.DeclaringType!.IsInstanceOfType(host) && (bool)s_isCanceled.GetValue(host)!;
}
