using Microsoft.ML.Qwen3Moe.Configuration;
using Microsoft.ML.Qwen3Moe.Lora;
using Microsoft.ML.Qwen3Moe.Execution;
using Microsoft.ML.Qwen3Moe.Kernels;
using Microsoft.ML.Qwen3Moe.Training;
using Microsoft.ML.Qwen3Moe.Training.Checkpoints;

namespace Microsoft.ML.Qwen3Moe;

public sealed partial class Qwen3MoeEstimator
{
    /// <summary>
    /// Everything a Qwen3-MoE fine-tune can be told: the starting model and tokenizer, batching, AdamW and its
    /// schedule, precision and devices, which parameters train, and the pipeline layout. The scoring columns and
    /// settings are inherited from <see cref="Qwen3MoeScoringOptions"/>; the fitted transformer scores with them.
    /// </summary>
    public sealed class Options : Qwen3MoeScoringOptions
    {
        /// <summary>
        /// Hugging Face model folder (<c>config.json</c> + safetensors) to start from. Default null: a new random model
        /// from <see cref="NewModel"/>.
        /// </summary>
        public string? ModelPath;

        /// <summary>Architecture of a new, randomly initialised model (used when <see cref="ModelPath"/> is null). Default null.</summary>
        public Qwen3MoeForCausalLMParameters? NewModel;

        /// <summary>Seed of a new model's initial weights and of the shuffling. Default 1.</summary>
        public int Seed = 1;

        /// <summary>
        /// Folder of the tokenizer (<c>tokenizer.json</c> or <c>vocab.json</c> + <c>merges.txt</c>, with
        /// <c>tokenizer_config.json</c>). Default null: <see cref="ModelPath"/>. Not needed with <see cref="Qwen3MoeScoringOptions.TokenIdsColumnName"/>.
        /// </summary>
        public string? TokenizerPath;

        /// <summary>Rows per forward/backward pass (padded to the longest row of the batch). Default 8.</summary>
        public int BatchSize = 8;

        /// <summary>Batches accumulated into one optimizer step (every target token weighs the same). Default 1.</summary>
        public int GradientAccumulationSteps = 1;

        /// <summary>
        /// Pack several training rows into each row of <see cref="Qwen3MoeScoringOptions.MaxSequenceLength"/> tokens (sequence packing, as
        /// HF TRL's <c>packing</c> with position ids): attention stays within each document, positions restart at 0 per
        /// document, no token predicts the next document, and padding (only at the end of a packed row) stays out of the
        /// loss, the MoE statistics and the load-balancing loss, so every step's loss is the token-weighted mean NLL of
        /// its documents as without packing. The rows are packed once (best-fit decreasing, deterministic) and the packed
        /// rows shuffled per epoch, so resuming from a checkpoint is exact; <see cref="BatchSize"/> then counts packed
        /// rows. Rows longer than the maximum length are truncated or skipped first (<see cref="LongTextHandling"/>);
        /// validation rows are never packed. Packed batches are padded to the maximum length (the rows are nearly full),
        /// so the masked attention sees one shape, and a batch whose rows each hold one document is trained as the plain
        /// causal batch. The log says how much padding packing saves. Measured on an H200 (W1 shapes, batch 2, 2,048
        /// tokens): rows of 3,000 characters (500–1,300 tokens) train at 47–50k real tokens/s packed against 21–25k
        /// unpacked; rows of 9,000 characters (1,590–2,048 tokens, nothing to pack) at 48–50k against 50–52k. Default
        /// false all the same: packing changes what <see cref="BatchSize"/> counts, so the tokens of an optimizer step
        /// (and with them the effective learning rate) of an existing pipeline would change under it; turn it on for
        /// rows shorter than <see cref="Qwen3MoeScoringOptions.MaxSequenceLength"/>.
        /// </summary>
        public bool PackSequences;

        /// <summary>
        /// With <see cref="Qwen3MoeScoringOptions.PadToMultipleOf"/> above 1 (length buckets, unpacked rows): before the first
        /// step, run one forward and backward per batch width the data will use, with no update (gradients and MoE routing
        /// counts are discarded, the losses of the run are unchanged), so that no training step pays a width's first-call
        /// cost on a GPU (cuBLAS and attention kernel choice and loading: tens of milliseconds per new width). Costs one
        /// forward and backward per width, at most MaxSequenceLength / PadToMultipleOf of them, on any device (the gain on a
        /// GPU is not measured yet). Default true.
        /// </summary>
        public bool WarmUpLengthBuckets = true;

        /// <summary>Passes over the training data. Default 1.</summary>
        public int MaxEpochs = 1;

        /// <summary>Stop after this many optimizer steps, even mid-epoch; 0 for no limit. Default 0.</summary>
        public int MaxSteps;

        /// <summary>Shuffle the rows at every epoch (seeded by <see cref="Seed"/>). Default true.</summary>
        public bool Shuffle = true;

        /// <summary>Peak AdamW learning rate. Default 1e-4.</summary>
        public double LearningRate = 1e-4;

        /// <summary>AdamW (beta1, beta2). Default {0.9, 0.95}.</summary>
        public double[] AdamBetas = { 0.9, 0.95 };

        /// <summary>AdamW epsilon. Default 1e-8.</summary>
        public double AdamEps = 1e-8;

        /// <summary>Decoupled AdamW weight decay. Default 0.1.</summary>
        public double WeightDecay = 0.1;

        /// <summary>Decay of the learning rate after warm-up (cosine, linear, or constant). Default <see cref="LearningRateScheduleKind.Cosine"/>.</summary>
        public LearningRateScheduleKind LearningRateSchedule = LearningRateScheduleKind.Cosine;

        /// <summary>Fraction of the optimizer steps spent in linear warm-up from 0 to the peak. Default 0.05.</summary>
        public double WarmupRatio = 0.05;

        /// <summary>Final learning rate as a fraction of the peak (cosine and linear schedules). Default 0.1.</summary>
        public double MinLearningRateRatio = 0.1;

        /// <summary>Maximum global gradient L2 norm; 0 disables clipping. Default 1.0.</summary>
        public double ClipNorm = 1.0;

        /// <summary>Add the MoE load-balancing loss (times the config's <c>router_aux_loss_coef</c>) to the objective. Default true.</summary>
        public bool IncludeAuxiliaryLoss = true;

        /// <summary>With <see cref="Qwen3MoePrecision.BFloat16"/>, keep float32 master weights and AdamW moments. Default true.</summary>
        public bool Float32MasterWeights = true;

        /// <summary>
        /// Full fine-tuning or LoRA. Default <see cref="Qwen3MoeFineTuning.Full"/>, so existing pipelines keep their meaning;
        /// choose <see cref="Qwen3MoeFineTuning.LoRA"/> for large models (Qwen3-30B-A3B fits one 80 GB GPU only this way). LoRA
        /// needs <see cref="ModelPath"/>: the frozen base is that folder, and the fitted model's zip refers to it (fingerprinted)
        /// instead of copying it.
        /// </summary>
        public Qwen3MoeFineTuning FineTuning = Qwen3MoeFineTuning.Full;

        /// <summary>LoRA rank r (with <see cref="FineTuning"/> = LoRA). Default 16.</summary>
        public int LoraRank = 16;

        /// <summary>LoRA alpha: updates are scaled by alpha / r. Default 32.</summary>
        public double LoraAlpha = 32;

        /// <summary>Dropout on the LoRA inputs while training. Default 0 (PEFT refuses dropout on expert targets).</summary>
        public double LoraDropout;

        /// <summary>What LoRA adapts (flags). Default attention and routed experts (<see cref="LoraTargets.Default"/>).</summary>
        public LoraTargets LoraTargets = LoraTargets.Default;

        /// <summary>A PEFT adapter folder to continue training from (LoRA; its own rank, alpha and targets then apply). Default null: new adapters.</summary>
        public string? AdapterPath;

        /// <summary>
        /// Which parameters train: all, all but the routed experts, or only added vocabulary splits. Default
        /// <see cref="TrainableParameters.All"/> (with LoRA the adapters choose).
        /// </summary>
        public TrainableParameters TrainableParameters = TrainableParameters.All;

        /// <summary>
        /// What happens on a NaN/infinite loss or gradient: stop with an error, or skip that update. Default
        /// <see cref="NonFinitePolicy.Stop"/>.
        /// </summary>
        public NonFinitePolicy OnNonFinite = NonFinitePolicy.Stop;

        /// <summary>
        /// Recompute each decoder layer in the backward pass: about one extra forward for activation memory of roughly
        /// one layer. Same losses. Default false.
        /// </summary>
        public bool ActivationCheckpointing;

        /// <summary>
        /// Rows longer than <see cref="Qwen3MoeScoringOptions.MaxSequenceLength"/>: truncate or skip (counted in a
        /// warning). Default <see cref="LongTextHandling.Truncate"/>.
        /// </summary>
        public LongTextHandling LongTextHandling = LongTextHandling.Truncate;

        /// <summary>Write a progress line (step, loss, tokens/s, learning rate) every this many optimizer steps. Default 10.</summary>
        public int LogEveryNStep = 10;

        /// <summary>
        /// Folder for crash-safe training checkpoints (weights, optimizer state, schedule position, RNG, data position,
        /// MoE statistics; written atomically). Default null: none are written.
        /// </summary>
        public string? CheckpointDirectory;

        /// <summary>Write a training checkpoint every this many optimizer steps (with <see cref="CheckpointDirectory"/>). Default 100.</summary>
        public int CheckpointEverySteps = 100;

        /// <summary>How many of the newest training checkpoints to keep. Default 2.</summary>
        public int KeepCheckpoints = 2;

        /// <summary>
        /// Continue from the newest complete checkpoint in <see cref="CheckpointDirectory"/> when there is one (same data and
        /// options as the interrupted run): the run then gives exactly the losses it would have given without the interruption.
        /// Default true.
        /// </summary>
        public bool ResumeFromCheckpoint = true;

        /// <summary>
        /// When resuming finds checkpoints in <see cref="CheckpointDirectory"/> but every one is damaged or incomplete:
        /// stop with an error naming them, or start from step 0 (they are deleted at the first save). A checkpoint whose
        /// manifest holds impossible values (a step beyond the run, a data position this data never reaches at that step)
        /// is never resumed. Default <see cref="DamagedCheckpointPolicy.Stop"/>.
        /// </summary>
        public DamagedCheckpointPolicy OnDamagedCheckpoints = DamagedCheckpointPolicy.Stop;

        /// <summary>
        /// Rows to measure the validation loss on (same column as the training data; rows longer than
        /// <see cref="Qwen3MoeScoringOptions.MaxSequenceLength"/> are truncated). The loss (token-weighted mean NLL, no
        /// auxiliary loss) is reported through the progress channel and the log, and kept in
        /// <see cref="Qwen3MoeTransformer.ValidationHistory"/>: every <see cref="ValidationEveryNSteps"/> steps, at the end of
        /// each epoch, and after the last step. Default null: no validation.
        /// </summary>
        public IDataView? ValidationSet;

        /// <summary>Measure the validation loss every this many optimizer steps; 0 for only at epoch ends and after the last step. Default 0.</summary>
        public int ValidationEveryNSteps;

        /// <summary>
        /// Give back the weights of the validation with the lowest loss rather than those of the last step (needs
        /// <see cref="ValidationSet"/>; keeps one copy of the weights in host memory). Among the validations of this fit:
        /// a resumed run compares only its own. Default false.
        /// </summary>
        public bool KeepBestByValidationLoss;

        /// <summary>
        /// Stops the fit at the next step boundary (or validation batch) when cancelled: a training checkpoint of the steps
        /// done is written first when <see cref="CheckpointDirectory"/> is set, so a later fit resumes from there; then
        /// <see cref="OperationCanceledException"/> is thrown. ML.NET's own cancellation of the context is honoured the same
        /// way. Default: none.
        /// </summary>
        public CancellationToken CancellationToken;

        /// <summary>Pipeline stages the decoder layers are split over (1: no pipelining). Default 1.</summary>
        public int NumberOfStages = 1;

        /// <summary>
        /// Virtual layers counted for the embeddings on the first stage when balancing the split (d9d's
        /// pipeline_num_virtual_layers_pre). Default 0.
        /// </summary>
        public int NumberOfVirtualLayersPre;

        /// <summary>Virtual layers counted for the final norm and head on the last stage. Default 0.</summary>
        public int NumberOfVirtualLayersPost;

        /// <summary>Micro-batches each batch is split into for the pipeline schedule. Default 1.</summary>
        public int MicroBatches = 1;

        /// <summary>Pipeline schedule. Default <see cref="PipelineScheduleKind.OneForwardOneBackward"/>.</summary>
        public PipelineScheduleKind PipelineSchedule = PipelineScheduleKind.OneForwardOneBackward;

        /// <summary>
        /// Device of each stage ("cpu", "cuda:0", ...), one per stage. Default null: every stage on the device the
        /// <see cref="MLContext"/> asks for (<c>GpuDeviceId</c>/<c>FallbackToCpu</c>; the CPU when unset).
        /// </summary>
        public string[]? StageDevices;

        /// <summary>
        /// The kernel choices of the model built for the fit (it keeps them for scoring; a model loaded from a file uses
        /// <see cref="KernelOptions.Default"/>). Speed only: every choice gives the same results up to rounding. Default
        /// <see cref="KernelOptions.Default"/>, the fastest measured.
        /// </summary>
        public KernelOptions Kernels = KernelOptions.Default;

        /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid option.</summary>
        internal override void Validate()
        {
            base.Validate();
            Require.That(Kernels is not null, nameof(Kernels), Kernels, "must not be null (KernelOptions.Default for the fastest measured choices).");
            Require.That(ModelPath is not null || NewModel is not null, nameof(ModelPath), ModelPath,
                "give a Hugging Face model folder, or NewModel for a new random model.");
            Require.That(BatchSize > 0, nameof(BatchSize), BatchSize, "must be positive.");
            Require.That(GradientAccumulationSteps > 0, nameof(GradientAccumulationSteps), GradientAccumulationSteps, "must be positive.");
            Require.That(MaxEpochs > 0, nameof(MaxEpochs), MaxEpochs, "must be positive.");
            Require.That(MaxSteps >= 0, nameof(MaxSteps), MaxSteps, "must not be negative (0 for no limit).");
            Require.That(AdamBetas is { Length: 2 }, nameof(AdamBetas), AdamBetas is null ? null : string.Join(", ", AdamBetas),
                "must hold exactly two values (beta1, beta2).");
            Require.That(WarmupRatio is >= 0 and <= 1, nameof(WarmupRatio), WarmupRatio, "must be in [0, 1].");
            Require.That(ClipNorm >= 0 && double.IsFinite(ClipNorm), nameof(ClipNorm), ClipNorm, "must be a finite non-negative number (0 disables clipping).");
            Require.That(LogEveryNStep > 0, nameof(LogEveryNStep), LogEveryNStep, "must be positive.");
            Require.That(CheckpointEverySteps > 0, nameof(CheckpointEverySteps), CheckpointEverySteps, "must be positive.");
            Require.That(KeepCheckpoints > 0, nameof(KeepCheckpoints), KeepCheckpoints, "must be positive.");
            Require.That(ValidationEveryNSteps >= 0, nameof(ValidationEveryNSteps), ValidationEveryNSteps, "must not be negative (0: only at epoch ends).");
            Require.That(!KeepBestByValidationLoss || ValidationSet is not null, nameof(KeepBestByValidationLoss), KeepBestByValidationLoss,
                "needs a ValidationSet.");
            Require.That(NumberOfStages > 0, nameof(NumberOfStages), NumberOfStages, "must be positive.");
            Require.That(NumberOfVirtualLayersPre >= 0, nameof(NumberOfVirtualLayersPre), NumberOfVirtualLayersPre, "must not be negative.");
            Require.That(NumberOfVirtualLayersPost >= 0, nameof(NumberOfVirtualLayersPost), NumberOfVirtualLayersPost, "must not be negative.");
            Require.That(MicroBatches > 0 && MicroBatches <= BatchSize, nameof(MicroBatches), MicroBatches, $"must be in [1, BatchSize = {BatchSize}].");
            Require.That(StageDevices is null || StageDevices.Length == NumberOfStages, nameof(StageDevices), StageDevices?.Length,
                $"must name one device per stage ({NumberOfStages}).");
            Require.That(Enum.IsDefined(LongTextHandling), nameof(LongTextHandling), LongTextHandling, "unknown value.");
            Require.That(Enum.IsDefined(PipelineSchedule), nameof(PipelineSchedule), PipelineSchedule, "unknown value.");
            Require.That(Enum.IsDefined(LearningRateSchedule), nameof(LearningRateSchedule), LearningRateSchedule, "unknown value.");
            Require.That(Enum.IsDefined(TrainableParameters), nameof(TrainableParameters), TrainableParameters, "unknown value.");
            Require.That(Enum.IsDefined(OnNonFinite), nameof(OnNonFinite), OnNonFinite, "unknown value.");
            Require.That(Enum.IsDefined(OnDamagedCheckpoints), nameof(OnDamagedCheckpoints), OnDamagedCheckpoints, "unknown value.");
            Require.That(Enum.IsDefined(FineTuning), nameof(FineTuning), FineTuning, "unknown value.");
            if (FineTuning == Qwen3MoeFineTuning.LoRA)
            {
                Require.That(ModelPath is not null, nameof(ModelPath), ModelPath,
                    "FineTuning = LoRA needs a Hugging Face model folder: the frozen base the adapters refer to.");
                Require.That(TrainableParameters == TrainableParameters.All, nameof(TrainableParameters), TrainableParameters,
                    "with FineTuning = LoRA the adapters choose what trains (LoraTargets).");
                try
                {
                    ToLoraOptions().Validate();
                }
                catch (ArgumentOutOfRangeException e)
                {
                    Require.That(false, "Lora" + e.ParamName, e.ActualValue, e.Message);
                }
            }
            else Require.That(AdapterPath is null, nameof(AdapterPath), AdapterPath, "an adapter needs FineTuning = LoRA.");
            // the optimizer's own checks (learning rate, betas, eps, weight decay, schedule ratios), before any model is built
            ToTrainingOptions(totalSteps: 1).Validate();
        }

        /// <summary>The model library's LoRA settings (seeded by <see cref="Seed"/>).</summary>
        internal LoraOptions ToLoraOptions() => new() { Rank = LoraRank, Alpha = LoraAlpha, Dropout = LoraDropout, Targets = LoraTargets, Seed = Seed };

        /// <summary>The model library's optimizer settings for a run of <paramref name="totalSteps"/> steps (validated there).</summary>
        internal TrainingOptions ToTrainingOptions(int totalSteps) => new()
        {
            LearningRate = LearningRate,
            Beta1 = AdamBetas[0],
            Beta2 = AdamBetas[1],
            Epsilon = AdamEps,
            WeightDecay = WeightDecay,
            WarmupSteps = (int)Math.Round(WarmupRatio * totalSteps),
            Schedule = LearningRateSchedule,
            MinLearningRateRatio = MinLearningRateRatio,
            TotalSteps = totalSteps,
            ClipGradientNorm = ClipNorm > 0 ? ClipNorm : null,
            IncludeAuxiliaryLoss = IncludeAuxiliaryLoss,
            Float32MasterWeights = Float32MasterWeights,
            Trainable = TrainableParameters,
            OnNonFinite = OnNonFinite,
        };
    }
}
