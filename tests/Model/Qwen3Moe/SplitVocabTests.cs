using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.HuggingFace;
using Microsoft.ML.Qwen3Moe.Pipelining;
using Microsoft.ML.Qwen3Moe.Tests.Parity;
using Microsoft.ML.Qwen3Moe.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Qwen3Moe.Tests.Model.Qwen3Moe;

public class SplitVocabTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("qwen3moe-splitvocab-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static Qwen3MoeForCausalLMParameters WithAddedSplit(Qwen3MoeForCausalLMParameters p, int added) => p with
    {
        Model = p.Model with
        {
            SplitVocabSize = new Dictionary<string, int> { [p.Model.SplitVocabOrder[0]] = p.Model.VocabSize, ["added"] = added },
            SplitVocabOrder = new[] { p.Model.SplitVocabOrder[0], "added" },
        },
    };

    [Test]
    public void IdsSelectTheirSplitAndOutsideEveryRangeIsAnError()
    {
        using var scope = NewDisposeScope();
        var p = WithAddedSplit(Qwen3MoeForCausalLMTests.TinyParameters(), 6);
        using var model = new Qwen3MoeForCausalLM(p);
        model.ResetParameters(1);
        var embeddings = model.Model.embed_tokens!;
        var rows = embeddings.forward(tensor(new long[] { 3, 50, 55 }));
        TensorAssert.Equal(rows[0], embeddings.Weight("default")[3], "id 3 -> default row 3");
        TensorAssert.Equal(rows[1], embeddings.Weight("added")[0], "id 50 -> added row 0");
        TensorAssert.Equal(rows[2], embeddings.Weight("added")[5], "id 55 -> added row 5");
        foreach (long id in new long[] { 56, -1 })
            Assert.That(() => CausalLMBatchCheck.Validate(new CausalLMBatch { InputIds = tensor(new[] { id }).unsqueeze(0) }, p.Model.VocabSize),
                Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains($"Token id {id} is outside the vocabulary [0, 56)"));
        var h = randn(2, 32);
        var logits = model.lm_head!.forward(h);
        Assert.That(logits.shape, Is.EqualTo(new long[] { 2, 56 }));
        TensorAssert.Close(logits.narrow(1, 50, 6), nn.functional.linear(h, model.lm_head.Weight("added")), 1e-6, "head logits of the added split come last");
    }

    /// <summary>
    /// Load a Hugging Face checkpoint into a model with 6 added tokens, train only those through a 2-stage pipeline,
    /// export, and load the export back as a plain Hugging Face model with one merged table.
    /// </summary>
    [Test]
    public void HuggingFaceCheckpointFillsTheFirstSplitTrainsTheNewOneAndExportsMerged()
    {
        using var scope = NewDisposeScope();
        var folder = GoldenFixture.Tiny.ModelFolder;
        var p = WithAddedSplit(HuggingFaceConfig.Load(folder), 6);
        var stages = Enumerable.Range(0, 2).Select(i => new Qwen3MoeForCausalLM(p, new PipelineStageInfo(i, 2))).ToArray();
        foreach (var s in stages) HuggingFaceCheckpoint.LoadWeights(s, folder);
        using var reference = HuggingFaceCheckpoint.Load(folder);
        var hfEmbeddings = reference.Model.embed_tokens!.Weight("default");
        var hfHead = reference.lm_head!.Weight("default");
        TensorAssert.Equal(stages[0].Model.embed_tokens!.Weight("default"), hfEmbeddings, "first split = checkpoint embed_tokens");
        TensorAssert.Equal(stages[1].lm_head!.Weight("default"), hfHead, "first split = checkpoint lm_head");
        TensorAssert.Close(stages[0].Model.embed_tokens!.Weight("added"), hfEmbeddings.mean(new long[] { 0 }, keepdim: true).expand(6, -1), 1e-6,
            "added embeddings start at the mean row");
        TensorAssert.Close(stages[1].lm_head!.Weight("added"), hfHead.mean(new long[] { 0 }, keepdim: true).expand(6, -1), 1e-6,
            "added head rows start at the mean row");

        var before = stages.SelectMany(s => s.UniqueNamedParameters()).ToDictionary(x => x.Name, x => x.Parameter.detach().clone());
        using (var pipeline = new PipelineExecutor(stages, PipelineScheduleKind.OneForwardOneBackward, 2))
        using (var trainer = new
            CausalLMTrainer(pipeline, new TrainingOptions { TotalSteps = 2, Trainable = TrainableParameters.AddedVocabularyOnly, LearningRate = 1e-2 }))
        {
            var ids = tensor(new long[] { 1, 384, 3, 385, 50, 389, 386, 2, 7, 387, 384, 9 }).view(2, 6);
            for (int step = 0; step < 2; step++) trainer.TrainStep(new[] { new CausalLMBatch { InputIds = ids, Labels = CausalLMLoss.ShiftLabels(ids) } });
        }
        foreach (var (name, param) in stages.SelectMany(s => s.UniqueNamedParameters()))
            Assert.That(!param.equal(before[name]).all().item<bool>(), Is.EqualTo(name.EndsWith(".added.weight")), $"{name}: only the added split trains");

        HuggingFaceCheckpoint.Save(stages, _dir);
        using var exported = HuggingFaceCheckpoint.Load(_dir);
        Assert.That(exported.Parameters.Model.SplitVocabOrder, Has.Count.EqualTo(1));
        Assert.That(exported.Parameters.Model.VocabSize, Is.EqualTo(390));
        var merged = cat(new[] { stages[0].Model.embed_tokens!.Weight("default"), stages[0].Model.embed_tokens!.Weight("added") }, 0);
        TensorAssert.Equal(exported.Model.embed_tokens!.Weight("default"), merged, "merged embed_tokens");
        var mergedHead = cat(new[] { stages[1].lm_head!.Weight("default"), stages[1].lm_head!.Weight("added") }, 0);
        TensorAssert.Equal(exported.lm_head!.Weight("default"), mergedHead, "merged lm_head");
        foreach (var s in stages) s.Dispose();
    }

    [Test]
    public void LoadingCanKeepTheAddedSplitsValues()
    {
        using var scope = NewDisposeScope();
        var folder = GoldenFixture.Tiny.ModelFolder;
        using var model = new Qwen3MoeForCausalLM(WithAddedSplit(HuggingFaceConfig.Load(folder), 2));
        model.ResetParameters(4);
        var added = model.Model.embed_tokens!.Weight("added").detach().clone();
        HuggingFaceCheckpoint.LoadWeights(model, folder, initializeAddedSplits: false);
        TensorAssert.Equal(model.Model.embed_tokens!.Weight("added"), added, "kept");
    }
}
