using System.Diagnostics;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Safetensors;

/// <summary>Model and config files are opened only when they are regular files: a FIFO or a device must fail, not hang or read forever.</summary>
public class RegularFileTests
{
    private string _temp = null!;

    [SetUp]
    public void SetUp() => _temp = Directory.CreateTempSubdirectory("qwen3moe-regular-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_temp, recursive: true);

    private static void MakeFifo(string path)
    {
        using var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", path) { UseShellExecute = false })!;
        mkfifo.WaitForExit();
        Assert.That(mkfifo.ExitCode, Is.Zero, "mkfifo");
    }

    /// <summary>Runs <paramref name="action"/> on another thread and fails the test if it has not ended within 20 s (a hang).</summary>
    private static Exception? EndsWithin(Action action)
    {
        var task = Task.Run(action);
        Assert.That(((IAsyncResult)task).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(20)), Is.True, "the call hung");
        return task.Exception?.InnerException;
    }

    [Test]
    public void AFifoNamedModelSafetensorsFailsInsteadOfHanging()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("FIFOs are made with mkfifo (Linux).");
        File.Copy(Path.Combine(GoldenFixture.Tiny.ModelFolder, "config.json"), Path.Combine(_temp, "config.json"));
        MakeFifo(Path.Combine(_temp, "model.safetensors"));
        var e = EndsWithin(() => HuggingFaceCheckpoint.Load(_temp).Dispose());
        Assert.That(e, Is.InstanceOf<IOException>());
        Assert.That(e!.Message, Does.Contain("model.safetensors").And.Contain("FIFO"));
    }

    [Test]
    public void ADeviceAsConfigFailsInsteadOfReadingForever()
    {
        if (!File.Exists("/dev/zero")) Assert.Ignore("no /dev/zero here.");
        var e = EndsWithin(() => HuggingFaceConfig.Load("/dev/zero"));
        Assert.That(e, Is.InstanceOf<IOException>());
        Assert.That(e!.Message, Does.Contain("/dev/zero").And.Contain("character device"));
    }

    [Test]
    public void AConfigLargerThanTheCapIsRefusedUnread()
    {
        var path = Path.Combine(_temp, "config.json");
        using (var f = File.Create(path)) f.SetLength(HuggingFaceConfig.MaxConfigBytes + 1);
        var e = Assert.Throws<FormatException>(() => HuggingFaceConfig.Load(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("bytes"));
    }
}
