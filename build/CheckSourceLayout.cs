// MSBuild inline task (RoslynCodeTaskFactory): the .editorconfig rules that no analyzer enforces. Each C# source line
// is at most MaxLineLength characters, holds no tab and no trailing whitespace; a violation is a build error naming
// the file and the line. Generated files (under obj/) are skipped.
using System;
using System.IO;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class CheckSourceLayout : Task
{
    [Required] public ITaskItem[] Files { get; set; }
    [Required] public int MaxLineLength { get; set; }

    public override bool Execute()
    {
        foreach (var item in Files)
        {
            var path = item.GetMetadata("FullPath");
            if (path.Contains("/obj/") || path.Contains("\\obj\\") || !File.Exists(path)) continue;
            var lines = File.ReadAllLines(path);
            for (int i = 0; i < lines.Length; i++)
            {
                var line = lines[i];
                string problem = line.Length > MaxLineLength ? $"line is {line.Length} characters long (at most {MaxLineLength}, .editorconfig max_line_length)"
                    : line.IndexOf('\t') >= 0 ? "tab in indentation or text (.editorconfig indent_style = space)"
                    : line.Length > 0 && char.IsWhiteSpace(line[line.Length - 1]) ? "trailing whitespace (.editorconfig trim_trailing_whitespace)"
                    : null;
                if (problem is not null) Log.LogError(null, "LAYOUT", null, path, i + 1, 1, i + 1, line.Length + 1, problem);
            }
        }
        return !Log.HasLoggedErrors;
    }
}
