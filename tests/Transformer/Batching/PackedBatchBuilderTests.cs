using Microsoft.ML.Qwen3Moe.Batching;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Transformer.Batching;

public class PackedBatchBuilderTests
{
    private static IReadOnlyList<IReadOnlyList<int>> Row(params int[][] documents) => documents;

    [Test]
    public void DocumentsAreConcatenatedWithTheirIdsAndNoLabelCrossesADocument()
    {
        using var scope = NewDisposeScope();
        var builder = new PackedBatchBuilder(new CausalLMBatchBuilder(padTokenId: 9, maxLength: 8));
        var batch = builder.Build(new[] { Row(new[] { 11, 12, 13 }, new[] { 21, 22 }, new[] { 31, 32, 33 }), Row(new[] { 41, 42, 43, 44, 45 }) });
        const long X = CausalLMLoss.IgnoreIndex;
        Assert.That(batch.InputIds!.data<long>().ToArray(), Is.EqualTo(new long[] { 11, 12, 13, 21, 22, 31, 32, 33, 41, 42, 43, 44, 45, 9, 9, 9 }));
        Assert.That(batch.Labels!.data<long>().ToArray(), Is.EqualTo(new long[] { 12, 13, X, 22, X, 32, 33, X, 42, 43, 44, 45, X, X, X, X }));
        Assert.That(batch.DocumentIds!.data<long>().ToArray(), Is.EqualTo(new long[] { 0, 0, 0, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 1, 1, 1 }),
            "0, 1, ... per document of a row; the padding a document of its own");
        Assert.That(batch.AttentionMask!.data<long>().ToArray(), Is.EqualTo(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }));
        Assert.That(batch.RightPadded, Is.True);
        Assert.That(batch.PositionIds, Is.Null, "the model restarts positions from the document ids");
    }

    [Test]
    public void RowsOfOneDocumentEachGiveThePlainCausalBatch()
    {
        using var scope = NewDisposeScope();
        var rows = new CausalLMBatchBuilder(padTokenId: 9, maxLength: 8);
        var packed = new PackedBatchBuilder(rows).Build(new[] { Row(new[] { 11, 12, 13 }), Row(new[] { 41, 42, 43, 44, 45 }) });
        var (plain, _) = rows.Build(new IReadOnlyList<int>[] { new[] { 11, 12, 13 }, new[] { 41, 42, 43, 44, 45 } });
        Assert.That(packed.DocumentIds, Is.Null, "no mask needed: attention stays on the unmasked (flash) path");
        Assert.That(packed.InputIds!.data<long>().ToArray(), Is.EqualTo(plain.InputIds!.data<long>().ToArray()));
        Assert.That(packed.Labels!.data<long>().ToArray(), Is.EqualTo(plain.Labels!.data<long>().ToArray()));
        Assert.That(packed.AttentionMask!.data<long>().ToArray(), Is.EqualTo(plain.AttentionMask!.data<long>().ToArray()));
        Assert.That(packed.RightPadded, Is.True);
    }

    [Test]
    public void ARowOverTheMaximumLengthIsRefusedRatherThanCut()
    {
        using var scope = NewDisposeScope();
        var builder = new PackedBatchBuilder(new CausalLMBatchBuilder(0, 4));
        var e = Assert.Throws<ArgumentException>(() => builder.Build(new[] { Row(new[] { 1, 2 }), Row(new[] { 1, 2, 3 }, new[] { 4, 5 }) }))!;
        Assert.That(e.Message, Does.Contain("Packed row 1 holds 5 tokens in 2 documents").And.Contain("at most 4"));
    }
}
