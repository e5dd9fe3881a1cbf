// MSBuild inline task (RoslynCodeTaskFactory): marks chosen GNU version needs of an ELF64 shared library
// as weak (VER_FLG_WEAK) so the dynamic loader warns instead of failing when the system library lacks them.
//
// Why: TorchSharp 0.107's libLibTorchSharp.so names GLIBCXX_3.4.32 on one symbol
// (_ZSt21ios_base_library_initv) that it never calls; Debian 12's libstdc++ stops at 3.4.31. The patch is applied
// to the copy in the build/publish output (written to a temp file, then renamed, so a hard link into the NuGet
// cache is never modified), and only when the system's libstdc++ lacks the version.
using System;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class WeakenElfVersionNeed : Task
{
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    [Required] public ITaskItem[] Files { get; set; }
    [Required] public string VersionName { get; set; }
    /// <summary>Libraries that, if any of them defines <see cref="VersionName"/>, make the patch unnecessary.</summary>
    public ITaskItem[] SystemLibraries { get; set; }

    public override bool Execute()
    {
        var needle = Encoding.ASCII.GetBytes(VersionName + "\0");
        foreach (var lib in SystemLibraries ?? Array.Empty<ITaskItem>())
        {
            var path = lib.ItemSpec;
            if (File.Exists(path) && IndexOf(File.ReadAllBytes(path), needle) >= 0)
            {
                Log.LogMessage(MessageImportance.Low, $"{path} defines {VersionName}; no patch needed.");
                return true;
            }
        }
        foreach (var item in Files)
        {
            var path = item.ItemSpec;
            var bytes = File.ReadAllBytes(path);
            int patched;
            try { patched = Patch(bytes, VersionName); }
            catch (Exception e) { Log.LogError($"{path}: cannot read ELF version needs: {e.Message}"); return false; }
            if (patched == 0) continue;
            var tmp = path + ".weak.tmp";
            File.WriteAllBytes(tmp, bytes);
            File.Replace(tmp, path, null); // rename over the target: breaks any hard link, never half-written
            Log.LogMessage(MessageImportance.Normal, $"{path}: marked {VersionName} weak ({patched} entr{(patched == 1 ? "y" : "ies")}).");
        }
        return !Log.HasLoggedErrors;
    }

    static int IndexOf(byte[] hay, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= hay.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && hay[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }

    /// <summary>Returns how many version-need entries were newly marked weak.</summary>
    static int Patch(byte[] b, string name)
    {
        if (b.Length < 64 || b[0] != 0x7f || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F') throw new InvalidDataException("not an ELF file");
        if (b[4] != 2 || b[5] != 1) throw new InvalidDataException("only little-endian ELF64 is supported");
        long shoff = BitConverter.ToInt64(b, 0x28);
        int shentsize = BitConverter.ToUInt16(b, 0x3A), shnum = BitConverter.ToUInt16(b, 0x3C);
        int count = 0;
        for (int s = 0; s < shnum; s++)
        {
            long sh = shoff + (long)s * shentsize;
            if (BitConverter.ToUInt32(b, (int)sh + 4) != ShtGnuVerneed) continue;
            long off = BitConverter.ToInt64(b, (int)sh + 0x18);
            uint link = BitConverter.ToUInt32(b, (int)sh + 0x28);
            long strOff = BitConverter.ToInt64(b, (int)(shoff + (long)link * shentsize) + 0x18);
            long vn = off;
            while (true)
            {
                int cnt = BitConverter.ToUInt16(b, (int)vn + 2);
                long aux = vn + BitConverter.ToUInt32(b, (int)vn + 8);
                for (int a = 0; a < cnt; a++)
                {
                    uint nameOff = BitConverter.ToUInt32(b, (int)aux + 8);
                    long p = strOff + nameOff; int e = (int)p; while (b[e] != 0) e++;
                    var auxName = Encoding.ASCII.GetString(b, (int)p, e - (int)p);
                    ushort flags = BitConverter.ToUInt16(b, (int)aux + 4);
                    if (auxName == name && (flags & VerFlgWeak) == 0)
                    {
                        flags |= VerFlgWeak;
                        b[aux + 4] = (byte)flags; b[aux + 5] = (byte)(flags >> 8);
                        count++;
                    }
                    uint next = BitConverter.ToUInt32(b, (int)aux + 12);
                    if (next == 0) break;
                    aux += next;
                }
                uint vnNext = BitConverter.ToUInt32(b, (int)vn + 12);
                if (vnNext == 0) break;
                vn += vnNext;
            }
        }
        return count;
    }
}
