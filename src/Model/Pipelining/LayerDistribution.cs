namespace Microsoft.ML.Qwen3Moe.Pipelining;

/// <summary>Splits decoder layers across pipeline stages exactly as d9d's <c>distribute_layers_for_pipeline_stage</c>.</summary>
public static class LayerDistribution
{
    /// <summary>
    /// Returns the half-open range [start, end) of global layer indices owned by <paramref name="stage"/>. Virtual layers
    /// (the cost of embeddings before and of norm+head after) take part in the balance but are not built.
    /// </summary>
    /// <exception cref="ArgumentException">Some stage would own no layer (the pipeline is too long).</exception>
    public static (int Start, int End) DistributeLayersForPipelineStage(int numLayers, int virtualLayersPre, int virtualLayersPost, PipelineStageInfo stage)
    {
        stage.Validate();
        if (numLayers < 0 || virtualLayersPre < 0 || virtualLayersPost < 0)
            throw new ArgumentOutOfRangeException(nameof(numLayers),
                $"Layer counts must not be negative (layers {numLayers}, pre {virtualLayersPre}, post {virtualLayersPost}).");
        var counts = LayerCounts(numLayers, virtualLayersPre, virtualLayersPost, stage.NumStages);
        int start = counts.Take(stage.CurrentStage).Sum();
        return (start, start + counts[stage.CurrentStage]);
    }

    /// <summary>Number of real layers of every stage.</summary>
    public static int[] LayerCounts(int numLayers, int virtualLayersPre, int virtualLayersPost, int numStages)
    {
        int total = numLayers + virtualLayersPre + virtualLayersPost;
        int baseCount = total / numStages, extra = total % numStages;
        var counts = new int[numStages];
        for (int s = 0; s < numStages; s++)
        {
            counts[s] = baseCount + (s < extra ? 1 : 0);
            if (s == 0) counts[s] -= virtualLayersPre;
            if (s == numStages - 1) counts[s] -= virtualLayersPost;
            if (counts[s] <= 0)
                throw new ArgumentException(
                    $"Pipeline too long: {numLayers} layers (+{virtualLayersPre} virtual before, +{virtualLayersPost} after) over {numStages} stages leaves " +
                        $"stage {s} with {counts[s]} layers.");
        }
        return counts;
    }
}
