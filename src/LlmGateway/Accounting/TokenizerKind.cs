namespace LlmGateway.Accounting;

/// <summary>How a model's tokens are counted: one of OpenAI's BPE encodings, the bytes bound, or the bytes / 4 estimate.</summary>
internal enum TokenizerKind
{
    /// <summary>Bytes / 4: an estimate and not a bound (a budget can be passed by the difference); only when a model's config asks for it.</summary>
    Estimate,

    /// <summary>
    /// No tokenizer is known for the model: the prompt reserves its UTF-8 bytes (every token of a byte-level BPE is at
    /// least one byte, so this bounds any provider's count); size guards and uncounted answers use bytes / 4.
    /// </summary>
    Bytes,

    /// <summary>gpt-4o, gpt-4.1, gpt-4.5, gpt-5 and the o-series.</summary>
    O200kBase,

    /// <summary>gpt-4, gpt-3.5 and the text-embedding-3 / ada-002 models.</summary>
    Cl100kBase,
}

/// <summary>The names of the tokenizers in the config (<c>Gateway:Models:&lt;name&gt;:Tokenizer</c>) and the default for a model name.</summary>
internal static class TokenizerNames
{
    public const string Estimate = "estimate";
    public const string Bytes = "bytes";
    public const string O200kBase = "o200k_base";
    public const string Cl100kBase = "cl100k_base";

    /// <summary>The accepted values, for error messages.</summary>
    public const string Choices = "o200k_base, cl100k_base, bytes or estimate";

    public static bool TryParse(string? value, out TokenizerKind kind)
    {
        if (string.Equals(value, O200kBase, StringComparison.OrdinalIgnoreCase))
        {
            kind = TokenizerKind.O200kBase;
            return true;
        }

        if (string.Equals(value, Cl100kBase, StringComparison.OrdinalIgnoreCase))
        {
            kind = TokenizerKind.Cl100kBase;
            return true;
        }

        if (string.Equals(value, Bytes, StringComparison.OrdinalIgnoreCase))
        {
            kind = TokenizerKind.Bytes;
            return true;
        }

        kind = TokenizerKind.Estimate;
        return string.Equals(value, Estimate, StringComparison.OrdinalIgnoreCase);
    }

    public static string Name(TokenizerKind kind) => kind switch
    {
        TokenizerKind.O200kBase => O200kBase,
        TokenizerKind.Cl100kBase => Cl100kBase,
        TokenizerKind.Bytes => Bytes,
        _ => Estimate,
    };

    /// <summary>True for the kinds with a real tokenizer (the OpenAI encodings), whose counts are exact.</summary>
    public static bool HasTokenizer(this TokenizerKind kind) => kind is TokenizerKind.O200kBase or TokenizerKind.Cl100kBase;

    /// <summary>
    /// The encoding OpenAI uses for a model name (the upstream model name when the config sets one): gpt-4o,
    /// gpt-4.1, gpt-4.5, gpt-5, chatgpt-4o and the o-series (o1, o3, o4-mini, ...) use o200k_base; gpt-4, gpt-3.5
    /// (gpt-35 on Azure), text-embedding-3 and text-embedding-ada-002 use cl100k_base. A "provider/" prefix and a
    /// fine-tune's "ft:" are ignored. Any other name gets the bytes bound: its tokenizer is unknown, and the
    /// bound keeps every budget exact whatever the provider's tokenizer is.
    /// </summary>
    public static TokenizerKind DefaultFor(string model)
    {
        var name = model.AsSpan();
        var slash = name.LastIndexOf('/');
        if (slash >= 0)
        {
            name = name[(slash + 1)..];
        }

        if (name.StartsWith("ft:", StringComparison.OrdinalIgnoreCase))
        {
            name = name[3..];
        }

        if (name.StartsWith("gpt-4o", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("gpt-4.1", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("gpt-4.5", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("gpt-5", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("chatgpt-4o", StringComparison.OrdinalIgnoreCase)
            || (name.Length > 1 && (name[0] is 'o' or 'O') && char.IsAsciiDigit(name[1])))
        {
            return TokenizerKind.O200kBase;
        }

        if (name.StartsWith("gpt-4", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("gpt-3.5", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("gpt-35", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("text-embedding-3", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("text-embedding-ada-002", StringComparison.OrdinalIgnoreCase))
        {
            return TokenizerKind.Cl100kBase;
        }

        return TokenizerKind.Bytes;
    }
}
