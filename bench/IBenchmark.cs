namespace Microsoft.ML.Qwen3Moe.Benchmarks;

/// <summary>A named benchmark workload; <see cref="Program"/> finds every implementation by reflection.</summary>
internal interface IBenchmark
{
    /// <summary>The name given on the command line (e.g. <c>tokenizer</c>, <c>w1</c>).</summary>
    string Name { get; }

    /// <summary>One line for the usage text.</summary>
    string Description { get; }

    /// <summary>Runs the workload with the remaining command-line arguments; returns the process exit code.</summary>
    int Run(string[] args);
}
