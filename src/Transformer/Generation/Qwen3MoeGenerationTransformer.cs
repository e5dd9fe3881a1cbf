using Microsoft.ML.Data;
using Microsoft.ML.Qwen3Moe.Scoring;
using Microsoft.ML.Qwen3Moe.Tokenization;

namespace Microsoft.ML.Qwen3Moe;

/// <summary>
/// Adds a completion column to a prompt column with a Qwen3-MoE model (made by <see cref="Qwen3MoeTransformer.Generate"/>):
/// rows are generated lazily in batches as a cursor reaches them. It shares the model of the transformer that made it
/// (dispose that one, not this). Not a row-to-row mapper (generate with <see cref="Transform"/>, or with
/// <see cref="Qwen3TextGenerator"/> for single prompts), and not saved: save the <see cref="Qwen3MoeTransformer"/> and call
/// <see cref="Qwen3MoeTransformer.Generate"/> again after loading.
/// </summary>
public sealed class Qwen3MoeGenerationTransformer : ITransformer
{
    private readonly Qwen3TextGenerator _generator;
    private readonly Qwen3MoeGenerationOptions _options;

    internal Qwen3MoeGenerationTransformer(Qwen3TextGenerator generator, Qwen3MoeGenerationOptions options)
    {
        options.Validate();
        _generator = generator;
        _options = options;
    }

    /// <summary>False: completions come in batches through <see cref="Transform"/>.</summary>
    public bool IsRowToRowMapper => false;

    /// <summary>The input schema plus the completion column (text).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The prompt column is missing or not text (ML.NET's messages).</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        PromptColumn(inputSchema);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        builder.AddColumn(_options.CompletionColumnName, TextDataViewType.Instance);
        return builder.ToSchema();
    }

    /// <summary>Adds the completion column to <paramref name="input"/> (lazily, in batches of <see cref="Qwen3MoeGenerationOptions.BatchSize"/>).</summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new GeneratedDataView(input, PromptColumn(input.Schema), GetOutputSchema(input.Schema), this);
    }

    /// <summary>Not supported: see the class remarks.</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) =>
        throw new NotSupportedException("The generation transformer works on batches: use Transform, or Qwen3MoeTransformer.TextGenerator for one prompt.");

    /// <summary>Not supported: save the <see cref="Qwen3MoeTransformer"/> instead and call <see cref="Qwen3MoeTransformer.Generate"/> after loading
    /// it.</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) =>
        throw new NotSupportedException(
            "A generation transformer is not saved: save the Qwen3MoeTransformer and call Generate(options) after mlContext.Model.Load.");

    /// <summary>Completions of a batch of prompts (chat template applied when asked).</summary>
    internal string[] Complete(IReadOnlyList<string> prompts)
    {
        if (!_options.ApplyChatTemplate) return _generator.Generate(prompts, _options).Select(c => c.Text).ToArray();
        var ids = prompts.Select(p => (IReadOnlyList<int>)_generator.Tokenizer.EncodeChat(Conversation(p), enableThinking: _options.EnableThinking)).ToArray();
        return _generator.GenerateIds(ids, _options).Select(c => Qwen3ChatReply.Parse(c.Text).Answer).ToArray();
    }

    internal int BatchSize => _options.BatchSize;

    private IReadOnlyList<ChatMessage> Conversation(string prompt) => _options.SystemPrompt is null
        ? new[] { ChatMessage.User(prompt) }
        : new[] { ChatMessage.System(_options.SystemPrompt), ChatMessage.User(prompt) };

    private DataViewSchema.Column PromptColumn(DataViewSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        var column = schema.GetColumnOrNull(_options.PromptColumnName) ?? throw SchemaErrors.NotFound("prompt", _options.PromptColumnName);
        if (column.Type is not TextDataViewType)
            throw SchemaErrors.Mismatch("prompt", _options.PromptColumnName, TextDataViewType.Instance.ToString(), column.Type.ToString() ?? "?");
        return column;
    }
}
