using System.Reflection;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Estimator;

[TestFixture]
public class CancellationTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("qwen3moe-cancel-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    /// <summary>Cancels when the log reports that <paramref name="step"/> steps are done (the log is raised on the training thread).</summary>
    private static void CancelAfterStep(MLContext ml, int step, Action cancel) =>
        ml.Log += (_, e) =>
        {
            if (e.Source.Contains("Qwen3Moe", StringComparison.Ordinal) && e.RawMessage.StartsWith($"Step {step}/", StringComparison.Ordinal)) cancel();
        };

    /// <summary>
    /// A token cancelled after step 3 of 6 stops the fit before step 4 with <see cref="OperationCanceledException"/>,
    /// having written the step-3 training checkpoint (none was due: CheckpointEverySteps = 100); a fit with the same
    /// options then resumes there and ends with exactly the uninterrupted run's losses and weights (its scores).
    /// </summary>
    [Test]
    public void ATokenCancelStopsAtAStepBoundaryWritesACheckpointAndResumesToTheUninterruptedResult()
    {
        var ml = new MLContext(seed: 1);
        var data = TestModels.Texts(ml, TestModels.Corpus);
        using var full = ml.Qwen3Moe().FineTune(TestModels.TextOptions(maxSteps: 6)).Fit(data);

        using var cts = new CancellationTokenSource();
        var cancelled = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(cancelled);
        var options = TestModels.TextOptions(maxSteps: 6);
        options.CheckpointDirectory = _dir;
        options.CheckpointEverySteps = 100;
        options.CancellationToken = cts.Token;
        CancelAfterStep(cancelled, 3, cts.Cancel);
        var e = Assert.Catch<OperationCanceledException>(() => cancelled.Qwen3Moe().FineTune(options).Fit(TestModels.Texts(cancelled, TestModels.Corpus)));
        Assert.That(e!.CancellationToken, Is.EqualTo(cts.Token));
        Assert.That(e.Message, Does.Contain("after step 3 of 6"));
        Assert.That(log, Has.None.Contains("Step 4/"), "no step after the cancel");
        Assert.That(log, Has.Some.Contains("Cancelled after step 3: wrote the training checkpoint"));
        Assert.That(Directory.GetDirectories(_dir).Select(Path.GetFileName), Is.EqualTo(new[] { "step-00000003" }));

        options.CancellationToken = CancellationToken.None;
        var resumedContext = new MLContext(seed: 1);
        using var resumed = resumedContext.Qwen3Moe().FineTune(options).Fit(TestModels.Texts(resumedContext, TestModels.Corpus));
        Assert.That(resumed.TrainingHistory.Select(r => r.Step), Is.EqualTo(new[] { 3, 4, 5 }));
        Assert.That(resumed.TrainingHistory.Select(r => r.Loss), Is.EqualTo(full.TrainingHistory.Skip(3).Select(r => r.Loss)), "losses after the resume " +
            "(bit-identical)");
        var texts = TestModels.Texts(ml, "The cat sat on the log.", "A dog and a cat.");
        Assert.That(TestModels.Vectors(resumed.Transform(texts), "LogProbabilities"), Is.EqualTo(TestModels.Vectors(full.Transform(texts), "LogProbabilities")),
            "final weights (through their scores) equal the uninterrupted run's");
    }

    /// <summary>ML.NET's own cancellation of the context (what AutoML calls) stops the fit at the next step boundary.</summary>
    [Test]
    public void MlNetContextCancellationStopsTheFit()
    {
        Assert.That(TrainingCancellation.HostCancellationSupported, "ML.NET 5.0.1's ICancelable.IsCanceled is reachable");
        var ml = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(ml);
        var cancel = typeof(MLContext).GetMethod("CancelExecution", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)!;
        CancelAfterStep(ml, 2, () => cancel.Invoke(ml, null));
        var e = Assert.Catch<OperationCanceledException>(() => ml.Qwen3Moe().FineTune(TestModels.TextOptions(maxSteps: 6)).Fit(TestModels.Texts(ml,
            TestModels.Corpus)));
        Assert.That(e!.Message, Does.Contain("after step 2 of 6"));
        Assert.That(log, Has.None.Contains("Step 3/"));
        Assert.That(log, Has.Some.Contains("Cancelled after step 2."));
    }

    /// <summary>The training rows are read with a check before each row: a cancel while reading stops before any step, and writes nothing.</summary>
    [Test]
    public void ACancelWhileReadingTheDataStopsBeforeTraining()
    {
        using var cts = new CancellationTokenSource();
        IEnumerable<TextRow> Rows()
        {
            for (int i = 0; i < 100; i++)
            {
                if (i == 3) cts.Cancel();
                yield return new TextRow { Text = TestModels.Corpus[i % TestModels.Corpus.Length] };
            }
        }
        var ml = new MLContext(seed: 1);
        var log = TestModels.CaptureLog(ml);
        var options = TestModels.TextOptions();
        options.CheckpointDirectory = _dir;
        options.CancellationToken = cts.Token;
        var e = Assert.Catch<OperationCanceledException>(() => ml.Qwen3Moe().FineTune(options).Fit(ml.Data.LoadFromEnumerable(Rows())));
        Assert.That(e!.Message, Does.Contain("while reading the data"));
        Assert.That(log, Has.None.Contains("Step 1/"));
        Assert.That(Directory.GetDirectories(_dir), Is.Empty);
    }

    [Test]
    public void AnAlreadyCancelledTokenStopsBeforeAnyWork()
    {
        var ml = new MLContext(seed: 1);
        var options = TestModels.TextOptions();
        options.CancellationToken = new CancellationToken(canceled: true);
        var e = Assert.Catch<OperationCanceledException>(() => ml.Qwen3Moe().FineTune(options).Fit(TestModels.Texts(ml, TestModels.Corpus)));
        Assert.That(e!.Message, Does.Contain("before it started"));
    }
}
