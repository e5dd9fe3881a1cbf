// Minimal scorer (issue 2): loads a Hugging Face Qwen3-MoE checkpoint and prints per-token log-probs of a token sequence.
// Usage: TextScoring [modelFolder] [id id id ...]   (default: the tiny reference fixture and its first reference row)
using Microsoft.ML.Qwen3Moe;
using Microsoft.ML.Qwen3Moe.Checkpoints;
using Microsoft.ML.Qwen3Moe.Training;
using static TorchSharp.torch;

var root = AppContext.BaseDirectory;
var folder = args.Length > 0 ? args[0] : Path.Combine(FindRepoRoot(root), "tests", "Fixtures", "golden", "tiny", "model");
try
{
    using var model = HuggingFaceCheckpoint.Load(folder);
    long[] ids = args.Length > 1
        ? args.Skip(1).Select(long.Parse).ToArray()
        : Enumerable.Range(0, 16).Select(i => (long)((i * 37 + 11) % model.Parameters.Model.VocabSize)).ToArray();
    using var _ = no_grad();
    using var input = tensor(ids).unsqueeze(0);
    using var labels = CausalLMLoss.ShiftLabels(input);
    using var output = model.forward(new CausalLMBatch { InputIds = input, Labels = labels });
    var nll = output.Logps!.squeeze(0).data<float>().ToArray();
    Console.WriteLine($"model: {folder}");
    Console.WriteLine($"{"pos",4} {"token",8} {"next",8} {"log p(next)",12}");
    for (int t = 0; t < ids.Length - 1; t++) Console.WriteLine($"{t,4} {ids[t],8} {ids[t + 1],8} {-nll[t],12:F4}");
    var mean = -nll.Take(ids.Length - 1).Average();
    Console.WriteLine($"mean log-prob {mean:F4}, perplexity {Math.Exp(-mean):F2}");
    return 0;
}
catch (Exception e) when (e is IOException or InvalidDataException or FormatException or ArgumentException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}

static string FindRepoRoot(string start)
{
    for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
        if (File.Exists(Path.Combine(d.FullName, "Microsoft.ML.Qwen3Moe.sln"))) return d.FullName;
    return Directory.GetCurrentDirectory();
}
