using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests;

/// <summary>
/// A child process of this test assembly (<c>dotnet exec Microsoft.ML.Qwen3Moe.Tests.dll</c>, the child chosen by its
/// environment variables) whose standard output a test reads line by line, and which <see cref="Kill"/> ends at the
/// moment the test chooses. Disposing kills it if it still runs.
/// </summary>
internal sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly BlockingCollection<string> _pending = new();
    private readonly StringBuilder _stderr = new();

    private ChildProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) _pending.Add(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    /// <summary>Every line read so far (after <see cref="Kill"/>: every line the child wrote).</summary>
    public List<string> Lines { get; } = new();

    /// <summary>What the child wrote to standard error so far.</summary>
    public string Stderr
    {
        get
        {
            lock (_stderr) return _stderr.ToString();
        }
    }

    /// <summary>The child's process id.</summary>
    public int Id => _process.Id;

    /// <summary>Starts the test assembly as a child with <paramref name="environment"/> added to this process's.</summary>
    public static ChildProcess Start(IReadOnlyDictionary<string, string> environment)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(typeof(ChildProcess).Assembly.Location);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        return new ChildProcess(Process.Start(start)!);
    }

    /// <summary>The next line of standard output; fails the test when none comes within <paramref name="timeout"/>.</summary>
    public string Next(TimeSpan timeout)
    {
        if (!_pending.TryTake(out var line, timeout))
            Assert.Fail($"the child said nothing for {timeout.TotalSeconds:F0} s (exited: {_process.HasExited}); stderr: {Stderr}");
        Lines.Add(line!);
        return line!;
    }

    /// <summary>Kills the child and its process tree, waits for it, and adds the lines it wrote before dying to <see cref="Lines"/>.</summary>
    public void Kill()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
        while (_pending.TryTake(out var rest)) Lines.Add(rest);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Kill();
        _process.Dispose();
        _pending.Dispose();
    }
}
