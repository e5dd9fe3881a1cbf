using Microsoft.ML.Qwen3Moe.Batching;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Pipelining;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

/// <summary>
/// Packed rows (<see cref="CausalLMBatch.DocumentIds"/>) on the golden "mixed" model (float32, CPU; 16 experts top-4 on
/// three sparse layers and one dense layer, 8 query heads on 1 KV head): every document scores, trains and routes as it
/// does alone.
/// </summary>
public class PackedDocumentsTests
{
    private const int PadId = 0;
    private const int MaxLength = 26;

    /// <summary>
    /// Two packed rows of at most 26 tokens (ids in both golden vocabularies), padded to the longest, 24: documents of 7, 12
    /// and 5 tokens, and of 9 and 10 tokens (19 + 5 padding).
    /// </summary>
    private static readonly int[][] s_rows = { new[] { 7, 12, 5 }, new[] { 9, 10 } };

    private static List<int[]> Documents(long seed = 5)
    {
        var random = new Random((int)seed);
        return s_rows.SelectMany(r => r).Select(n => Enumerable.Range(0, n).Select(_ => random.Next(1, 384)).ToArray()).ToList();
    }

    /// <summary>The packed batch of <paramref name="documents"/> (in the order of <see cref="s_rows"/>), built as the estimator builds it.</summary>
    private static CausalLMBatch Packed(List<int[]> documents)
    {
        var packs = new List<IReadOnlyList<IReadOnlyList<int>>>();
        int next = 0;
        foreach (var row in s_rows) packs.Add(row.Select(_ => (IReadOnlyList<int>)documents[next++]).ToList());
        return new PackedBatchBuilder(new CausalLMBatchBuilder(PadId, MaxLength)).Build(packs);
    }

    private static CausalLMBatch Alone(int[] document) =>
        new CausalLMBatchBuilder(PadId, MaxLength).Build(new[] { (IReadOnlyList<int>)document }).Batch;

    /// <summary>(row, first column) of each document in the packed batch.</summary>
    private static IEnumerable<(int Row, int Start, int Length)> Places()
    {
        for (int r = 0; r < s_rows.Length; r++)
        {
            int at = 0;
            foreach (int n in s_rows[r])
            {
                yield return (r, at, n);
                at += n;
            }
        }
    }

    private static Dictionary<string, Tensor> Gradients(Qwen3MoeForCausalLM model) =>
        model.UniqueNamedParameters().Where(p => p.Parameter.grad is not null).ToDictionary(p => p.Name, p => p.Parameter.grad!.clone());

    /// <summary>
    /// Issue 17's bar: per-document losses and the gradients of the step within 1e-5 of running each document alone (one
    /// document per batch, no padding), with the same target-token normalisation as the trainer; routing (the router's
    /// gradient through the top-k weights) included.
    /// </summary>
    [Test]
    public void PackedBatchGivesEachDocumentsLossAndGradientAsAlone()
    {
        using var scope = NewDisposeScope();
        using var model = HuggingFaceCheckpoint.Load(GoldenFixture.Mixed.ModelFolder);
        using var executor = new SingleStageExecutor(model);
        var documents = Documents();
        var packed = Packed(documents);
        long targets = documents.Sum(d => d.Length - 1L);
        Assert.That(packed.Labels!.ne(CausalLMLoss.IgnoreIndex).sum().item<long>(), Is.EqualTo(targets),
            "the packed batch predicts every document's tokens but its first");

        var packedNll = executor.Score(packed);
        int i = 0;
        foreach (var (row, start, length) in Places())
        {
            var alone = executor.Score(Alone(documents[i]));
            TensorAssert.Close(packedNll[row].narrow(0, start, length), alone[0], 1e-5, $"per-token NLL of document {i}");
            i++;
        }

        var packedSums = executor.ForwardBackward(packed, targets, 0);
        var packedGradients = Gradients(model);
        foreach (var p in model.parameters()) p.grad = null;
        double aloneNll = documents.Sum(d => executor.ForwardBackward(Alone(d), targets, 0).NllSum.item<float>());
        var aloneGradients = Gradients(model);
        TensorAssert.RelativelyClose(packedSums.NllSum.item<float>() / targets, aloneNll / targets, 1e-6, "step loss (token-weighted mean NLL)");
        Assert.That(packedGradients.Keys, Is.EquivalentTo(aloneGradients.Keys));
        foreach (var (name, grad) in packedGradients) TensorAssert.Close(grad, aloneGradients[name], 1e-5, $"gradient of {name}");
        TestContext.Out.WriteLine($"largest gradient difference {packedGradients.Max(g => TensorAssert.MaxAbsDiff(g.Value, aloneGradients[g.Key])):E2}");
        var router = packedGradients["model.layers.0.mlp.gate.weight"];
        Assert.That(router.abs().max().item<float>(), Is.GreaterThan(1e-4f), "the router is trained through the top-k weights");
    }

    /// <summary>
    /// MoE statistics count each real token once (k choices per sparse layer), padding never; the load-balancing loss is
    /// over real tokens only.
    /// </summary>
    [Test]
    public void MoeStatisticsAndLoadBalancingLossCountRealTokensOnly()
    {
        using var scope = NewDisposeScope();
        using var model = HuggingFaceCheckpoint.Load(GoldenFixture.Mixed.ModelFolder);
        using var _ = no_grad();
        var documents = Documents(seed: 8);
        var packed = Packed(documents);
        int topK = model.Parameters.Model.Layer.ExpertsTopK;
        model.ResetMoeStats();
        using var packedOut = model.forward(packed);
        var packedCounts = model.MoeTokensPerExpert.clone();

        model.ResetMoeStats();
        var aloneLogits = new List<List<Tensor>>();
        foreach (var d in documents)
        {
            using var o = model.forward(Alone(d));
            aloneLogits.Add(o.RouterLogits.Select(t => t.clone()).ToList());
        }
        TensorAssert.Equal(packedCounts, model.MoeTokensPerExpert, "MoE statistics of the packed batch = those of the documents alone");
        int sparseLayers = packedOut.RouterLogits.Count;
        Assert.That(sparseLayers, Is.EqualTo(3), "the mixed model has three sparse layers");
        Assert.That(packedCounts.sum().item<long>(), Is.EqualTo(documents.Sum(d => (long)d.Length) * topK * sparseLayers), "k choices per real token");

        var union = Enumerable.Range(0, sparseLayers).Select(l => cat(aloneLogits.Select(a => a[l]).ToArray(), 0)).ToList(); // per layer [real tokens, E]
        var expected = CausalLMLoss.AuxiliaryLoss(union, topK).item<float>();
        var actual = CausalLMLoss.AuxiliaryLoss(packedOut.RouterLogits, topK, packed.AttentionMask).item<float>();
        TensorAssert.RelativelyClose(actual, expected, 1e-5, "load-balancing loss over the real tokens");
        var withPadding = CausalLMLoss.AuxiliaryLoss(packedOut.RouterLogits, topK).item<float>();
        Assert.That(Math.Abs(withPadding - expected), Is.GreaterThan(1e-4 * expected), "counting the padding would change the loss (the check can fail)");
    }

    /// <summary>
    /// Attention never crosses documents: new tokens in the first document of a row leave the other documents' NLL
    /// unchanged (within 1e-5, against 1e-3 or more without the document mask). Positions restart at each document: the
    /// model's own positions are exactly the restarted ones (<see cref="PositionsAndMaskFollowTheDocuments"/> checks their values).
    /// </summary>
    [Test]
    public void AttentionStaysInsideEachDocumentAndPositionsRestart()
    {
        using var scope = NewDisposeScope();
        using var model = HuggingFaceCheckpoint.Load(GoldenFixture.Mixed.ModelFolder);
        using var executor = new SingleStageExecutor(model);
        var documents = Documents();
        var before = executor.Score(Packed(documents));
        var changed = Documents();
        changed[0] = changed[0].Select(t => (t * 7 + 3) % 383 + 1).ToArray();
        var after = executor.Score(Packed(changed));
        Assert.That(TensorAssert.MaxAbsDiff(after[0].narrow(0, 0, 7), before[0].narrow(0, 0, 7)), Is.GreaterThan(1e-3),
            "the changed document scores differently");
        // not bit for bit: the changed tokens route to other experts, which regroups the expert GEMMs of every token (also
        // of the other row); a leak through attention moves the NLL by far more than the tolerance (the control below)
        double sameRow = TensorAssert.MaxAbsDiff(after[0].narrow(0, 7, 17), before[0].narrow(0, 7, 17));
        double otherRow = TensorAssert.MaxAbsDiff(after[1], before[1]);
        Assert.That(sameRow, Is.LessThanOrEqualTo(1e-5), "documents 2 and 3 of the row");
        Assert.That(otherRow, Is.LessThanOrEqualTo(1e-5), "the other row");
        var positions = PackedDocuments.Positions(Packed(documents).DocumentIds!);
        var leakBefore = executor.Score(Packed(documents) with { DocumentIds = null, PositionIds = positions });
        var leakAfter = executor.Score(Packed(changed) with { DocumentIds = null, PositionIds = positions });
        var leak = TensorAssert.MaxAbsDiff(leakAfter[0].narrow(0, 7, 17), leakBefore[0].narrow(0, 7, 17));
        Assert.That(leak, Is.GreaterThan(1e-3), "control: with attention across the row, the first document changes the others");
        TestContext.Out.WriteLine($"max |ΔNLL| of the other documents: row 0 {sameRow:E2}, row 1 {otherRow:E2}; without the document mask {leak:E2}");

        var packed = Packed(documents);
        long width = packed.InputIds!.shape[1]; // 24: the longest row
        var rowPositions = arange(width, dtype: ScalarType.Int64).unsqueeze(0).expand(2, width);
        var unrestarted = executor.Score(packed with { PositionIds = rowPositions });
        // RoPE scores depend on relative positions only, so inside the document mask an offset changes the NLL by rounding
        // alone (about 1e-6 here): the model's positions are told apart from the row's by bits, not by a tolerance
        var explicitPositions = executor.Score(packed with { PositionIds = PackedDocuments.Positions(packed.DocumentIds!) });
        TensorAssert.Equal(explicitPositions, before, "explicit restarted positions = the model's own");
        double offset = TensorAssert.MaxAbsDiff(unrestarted[0].narrow(0, 7, 12), before[0].narrow(0, 7, 12));
        Assert.That(offset, Is.GreaterThan(0).And.LessThan(1e-5), "positions along the whole row: other bits, the same NLL up to rounding");
    }

    [Test]
    public void PositionsAndMaskFollowTheDocuments()
    {
        using var scope = NewDisposeScope();
        var ids = tensor(new long[] { 0, 0, 0, 1, 1, 2, 2, 2, 0, 0, 1, 1, 1, 1, 1, 1 }, 2, 8);
        var positions = PackedDocuments.Positions(ids);
        Assert.That(positions.data<long>().ToArray(), Is.EqualTo(new long[] { 0, 1, 2, 0, 1, 0, 1, 2, 0, 1, 0, 1, 2, 3, 4, 5 }));
        var mask = PackedDocuments.CausalMask(ids, null);
        Assert.That(mask.shape, Is.EqualTo(new long[] { 2, 1, 8, 8 }));
        for (int b = 0; b < 2; b++)
            for (int q = 0; q < 8; q++)
                for (int k = 0; k < 8; k++)
                    Assert.That(mask[b, 0, q, k].item<bool>(), Is.EqualTo(k <= q && ids[b, q].item<long>() == ids[b, k].item<long>()),
                        $"row {b}, query {q}, key {k}");
        var keys = tensor(new long[] { 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }, 2, 8);
        var masked = PackedDocuments.CausalMask(ids, keys);
        Assert.That(masked[0, 0, 7].data<bool>().ToArray(), Is.EqualTo(new[] { false, false, false, false, false, true, false, true }),
            "a padding key is hidden, the token itself stays visible");
    }

    /// <summary>
    /// Through two pipeline stages (two micro-batches; the golden "tiny" model, whose head is not tied), every stage gets the
    /// documents: the same NLL and gradients as one stage.
    /// </summary>
    [Test]
    public void PackedBatchThroughPipelineStagesMatchesOneStage()
    {
        using var scope = NewDisposeScope();
        var folder = GoldenFixture.Tiny.ModelFolder;
        using var whole = HuggingFaceCheckpoint.Load(folder);
        var stages = Enumerable.Range(0, 2).Select(i => HuggingFaceCheckpoint.Load(folder, new PipelineStageInfo(i, 2))).ToArray();
        try
        {
            var documents = Documents();
            var packed = Packed(documents);
            long targets = packed.Labels!.ne(CausalLMLoss.IgnoreIndex).sum().item<long>();
            using var single = new SingleStageExecutor(whole);
            using var pipeline = new PipelineExecutor(stages, PipelineScheduleKind.OneForwardOneBackward, 2);
            var nll = pipeline.Score(packed);
            int i = 0;
            foreach (var (row, start, length) in Places())
            {
                TensorAssert.Close(nll[row].narrow(0, start, length), single.Score(Alone(documents[i]))[0], 1e-5, $"document {i} through the stages");
                i++;
            }
            var expected = single.ForwardBackward(packed, targets, 0);
            var actual = pipeline.ForwardBackward(packed, targets, 0);
            TensorAssert.RelativelyClose(actual.NllSum.item<float>(), expected.NllSum.item<float>(), 1e-6, "Σ NLL");
            Execution.PipelineFixtures.AssertSameGradients(stages, whole, 1e-5, "packed batch, 2 stages x 2 micro-batches");
        }
        finally
        {
            foreach (var s in stages) s.Dispose();
        }
    }

    [Test]
    public void DocumentIdsAreRefusedWithAKvCacheAndCheckedForShape()
    {
        using var scope = NewDisposeScope();
        using var model = HuggingFaceCheckpoint.Load(GoldenFixture.Mixed.ModelFolder);
        var packed = Packed(Documents());
        var e = Assert.Throws<ArgumentException>(() => model.forward(packed with { DocumentIds = packed.DocumentIds!.narrow(1, 0, 5) }))!;
        Assert.That(e.Message, Does.Contain("DocumentIds has shape [2, 5]"));
        e = Assert.Throws<ArgumentException>(() => model.forward(packed with { DocumentIds = packed.DocumentIds!.to(ScalarType.Int32) }))!;
        Assert.That(e.Message, Does.Contain("DocumentIds must be int64"));
        using var cache = new Microsoft.ML.Qwen3Moe.Generation.KvCache(model, 2, MaxLength);
        e = Assert.Throws<ArgumentException>(() => model.model.Forward(packed, cache))!;
        Assert.That(e.Message, Does.Contain("KV cache"));
    }
}
