namespace Microsoft.ML.Qwen3Moe.Execution;

/// <summary>
/// Builds pipeline programs as explicit action lists. Each stage gets its own program (what one device would run);
/// <see cref="Build"/> then interleaves them in time steps, every stage doing its next action once its inputs exist,
/// which is the order a single thread executes them in.
/// </summary>
public static class PipelineSchedule
{
    /// <summary>The program of one stage.</summary>
    /// <param name="kind">Training schedule.</param>
    /// <param name="stage">Stage index in [0, <paramref name="stages"/>).</param>
    /// <param name="stages">Number of stages.</param>
    /// <param name="microBatches">Number of micro-batches.</param>
    /// <param name="training">False for the forward-only program (scoring): forwards in micro-batch order, whatever <paramref name="kind"/>.</param>
    public static IReadOnlyList<PipelineAction> StageProgram(PipelineScheduleKind kind, int stage, int stages, int microBatches, bool training)
    {
        Check(stages, microBatches);
        if (stage < 0 || stage >= stages) throw new ArgumentOutOfRangeException(nameof(stage), stage, $"Stage must be in [0, {stages}).");
        PipelineAction F(int i) => new(PipelineActionKind.Forward, stage, i);
        PipelineAction B(int i) => new(PipelineActionKind.Backward, stage, i);
        var program = new List<PipelineAction>();
        if (!training || kind == PipelineScheduleKind.GPipe)
        {
            for (int i = 0; i < microBatches; i++) program.Add(F(i));
            if (training)
                for (int i = microBatches - 1; i >= 0; i--) program.Add(B(i));
            return program;
        }
        int warmup = Math.Min(stages - 1 - stage, microBatches);
        for (int i = 0; i < warmup; i++) program.Add(F(i));
        for (int i = 0; i < microBatches - warmup; i++)
        {
            program.Add(F(warmup + i));
            program.Add(B(i));
        }
        for (int i = microBatches - warmup; i < microBatches; i++) program.Add(B(i));
        return program;
    }

    /// <summary>
    /// All stages' programs merged in time steps: at each step every stage whose next action has its inputs (the previous
    /// stage's forward, the next stage's backward, both from earlier steps) runs it.
    /// </summary>
    /// <exception cref="InvalidOperationException">The programs deadlock (cannot happen for the built-in schedules).</exception>
    public static IReadOnlyList<PipelineAction> Build(PipelineScheduleKind kind, int stages, int microBatches, bool training)
    {
        var programs = Enumerable.Range(0, stages).Select(s => new Queue<PipelineAction>(StageProgram(kind, s, stages, microBatches, training))).ToArray();
        var done = new HashSet<PipelineAction>();
        var order = new List<PipelineAction>();
        while (programs.Any(p => p.Count > 0))
        {
            var ready = programs.Where(p => p.Count > 0 && IsReady(p.Peek(), done, stages)).ToList();
            if (ready.Count == 0) throw new InvalidOperationException($"Pipeline programs deadlock after {order.Count} actions.");
            foreach (var p in ready) order.Add(p.Dequeue());
            done.UnionWith(order.Skip(order.Count - ready.Count));
        }
        return order;
    }

    private static bool IsReady(PipelineAction a, HashSet<PipelineAction> done, int stages) => a.Kind == PipelineActionKind.Forward
        ? a.Stage == 0 || done.Contains(a with { Stage = a.Stage - 1 })
        : done.Contains(a with { Kind = PipelineActionKind.Forward }) && (a.Stage == stages - 1 || done.Contains(a with { Stage = a.Stage + 1 }));

    private static void Check(int stages, int microBatches)
    {
        if (stages <= 0) throw new ArgumentOutOfRangeException(nameof(stages), stages, "A pipeline needs at least one stage.");
        if (microBatches <= 0) throw new ArgumentOutOfRangeException(nameof(microBatches), microBatches, "A pipeline needs at least one micro-batch.");
    }
}
