using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace TextScoring;

/// <summary>Shows the Qwen3-MoE components' progress lines and warnings from <see cref="MLContext.Log"/> on the console.</summary>
internal static class ConsoleLog
{
    public static void Attach(MLContext context)
    {
        context.Log += (_, e) =>
        {
            if (!e.Source.Contains("Qwen3Moe", StringComparison.Ordinal)) return;
            if (e.Kind == ChannelMessageKind.Info) Console.WriteLine($"  {e.RawMessage}");
            else if (e.Kind is ChannelMessageKind.Warning or ChannelMessageKind.Error) Console.WriteLine($"  warning: {e.RawMessage}");
        };
    }
}
