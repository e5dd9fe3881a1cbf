using System.Globalization;
using Microsoft.ML.Qwen3Moe.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Reports training through ML.NET's channels, as its TorchSharp trainers do: a progress channel with the metrics
/// Loss, Tokens/s, Learning rate and Validation loss (NaN until the first validation) over the unit Steps (a checkpoint per step), and an Info line on the
/// message channel
/// every <c>LogEveryNStep</c> steps (and on the last), which a console user sees through <c>MLContext.Log</c>.
/// </summary>
internal sealed class TrainingProgress
{
    private readonly IChannel _channel;
    private readonly IProgressChannel _progress;
    private readonly int _totalSteps;
    private readonly int _logEvery;
    // read by ML.NET's progress thread: one immutable snapshot, replaced whole, so a reader never sees a torn mix
    private volatile Snapshot _last = new(default, 0, double.NaN);

    private sealed record Snapshot(TrainStepResult Step, double TokensPerSecond, double ValidationLoss);

    public TrainingProgress(IChannel channel, IProgressChannel progress, int totalSteps, int logEvery)
    {
        _channel = channel;
        _progress = progress;
        _totalSteps = totalSteps;
        _logEvery = logEvery;
        _progress.SetHeader(new ProgressHeader(new[] { "Loss", "Tokens/s", "Learning rate", "Validation loss" }, new[] { "Steps" }), e =>
        {
            var last = _last;
            e.SetProgress(0, last.Step.Step + 1, _totalSteps);
            e.SetMetric(0, last.Step.Loss);
            e.SetMetric(1, last.TokensPerSecond);
            e.SetMetric(2, last.Step.LearningRate);
            e.SetMetric(3, last.ValidationLoss);
        });
    }

    /// <summary>Records one optimizer step that took <paramref name="seconds"/>.</summary>
    public void Report(TrainStepResult step, double seconds)
    {
        double tokensPerSecond = seconds > 0 ? step.TargetTokens / seconds : 0;
        var validationLoss = _last.ValidationLoss;
        _last = new Snapshot(step, tokensPerSecond, validationLoss);
        _progress.Checkpoint(step.Loss, tokensPerSecond, step.LearningRate, validationLoss, step.Step + 1);
        if (step.Skipped)
            _channel.Warning(MessageSensitivity.None, "{0}",
                $"Step {step.Step + 1}/{_totalSteps}: non-finite loss or gradient; the update was skipped (OnNonFinite = SkipStep).");
        int done = step.Step + 1;
        if (done % _logEvery == 0 || done == _totalSteps || done == 1)
            _channel.Info(MessageSensitivity.None, "{0}", string.Create(CultureInfo.InvariantCulture,
                $"Step {done}/{_totalSteps}: loss {step.Loss:F4}, {tokensPerSecond:N0} tokens/s, learning rate {step.LearningRate:G3}, gradient norm " +
                    $"{step.GradientNorm:F3}"));
    }

    /// <summary>Records a validation pass: a progress checkpoint with the validation loss, and an Info line.</summary>
    public void ReportValidation(ValidationResult result)
    {
        var last = _last;
        _last = last with { ValidationLoss = result.Loss };
        _progress.Checkpoint(last.Step.Loss, last.TokensPerSecond, last.Step.LearningRate, result.Loss, result.Step);
        _channel.Info(MessageSensitivity.None, "{0}", string.Create(CultureInfo.InvariantCulture,
            $"Validation after step {result.Step}/{_totalSteps}{(result.EpochEnd ? $" (end of epoch {result.Epoch})" : "")}: loss {result.Loss:F4}, " +
            $"perplexity {Math.Exp(result.Loss):F2} ({result.Tokens} tokens)"));
    }
}
