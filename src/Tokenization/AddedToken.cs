namespace Microsoft.ML.Qwen3Moe.Tokenization;

/// <summary>A token added on top of the BPE vocabulary; always matched whole in the raw text, never split.</summary>
/// <param name="Content">The literal text of the token, e.g. <c>&lt;|im_start|&gt;</c> or <c>&lt;think&gt;</c>.</param>
/// <param name="Id">Its id.</param>
/// <param name="Special">
/// <c>true</c> for control tokens (<c>&lt;|im_end|&gt;</c>), which <c>skipSpecialTokens</c> drops when decoding;
/// <c>false</c> for added tokens such as <c>&lt;think&gt;</c>, which are still matched whole but always decoded.
/// </param>
public sealed record AddedToken(string Content, int Id, bool Special);
