using System.Text.Json;
using LlmGateway.Accounting;
using LlmGateway.Configuration;

namespace LlmGateway.Forwarding;

/// <summary>What the gateway needs from a request body, read in one pass.</summary>
internal struct LlmRequestInfo
{
    public string? Model;
    public bool Stream;

    /// <summary>stream_options.include_usage as the caller sent it (null when absent).</summary>
    public bool? IncludeUsage;

    /// <summary>max_tokens, max_completion_tokens or max_output_tokens, whichever was given (the largest, if several).</summary>
    public long? MaxOutputTokens;

    /// <summary>How many completions the provider generates: the larger of <c>n</c> and <c>best_of</c> (1 when absent).</summary>
    public long Choices;

    /// <summary>The prompt's size (text bytes, messages, tool definitions), for its token bound.</summary>
    public PromptSize Prompt;

    /// <summary>temperature 0 or a seed: the same request should get the same answer (cacheable).</summary>
    public bool Deterministic;

    /// <summary>
    /// Parses the body. Returns an error message naming the problem when it is not a JSON object, is
    /// malformed, or lacks a string "model" (on <see cref="LlmEndpoint.Messages"/>, also a positive "max_tokens").
    /// </summary>
    public static string? TryParse(ReadOnlySpan<byte> body, out LlmRequestInfo info, out string? errorParam, LlmEndpoint endpoint = LlmEndpoint.ChatCompletions)
    {
        var maxTokensGiven = false;
        info = default;
        info.Choices = 1;
        errorParam = null;
        var seen = ReadFields.None;
        if (!System.Text.Unicode.Utf8.IsValid(body))
        {
            return "The request body is not valid UTF-8.";
        }

        var reader = new Utf8JsonReader(body);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return "The request body must be a JSON object.";
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("model"u8))
                {
                    if (Duplicate(ref seen, ReadFields.Model, "model", ref errorParam) is { } duplicate)
                    {
                        return duplicate;
                    }

                    reader.Read();
                    if (reader.TokenType != JsonTokenType.String)
                    {
                        errorParam = "model";
                        return "'model' must be a string.";
                    }

                    info.Model = reader.GetString();
                }
                else if (reader.ValueTextEquals("stream"u8))
                {
                    if (Duplicate(ref seen, ReadFields.Stream, "stream", ref errorParam) is { } duplicate)
                    {
                        return duplicate;
                    }

                    reader.Read();
                    info.Stream = reader.TokenType == JsonTokenType.True;
                    if (reader.TokenType is not (JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null))
                    {
                        errorParam = "stream";
                        return "'stream' must be a boolean.";
                    }
                }
                else if (reader.ValueTextEquals("stream_options"u8))
                {
                    if (Duplicate(ref seen, ReadFields.StreamOptions, "stream_options", ref errorParam) is { } duplicate)
                    {
                        return duplicate;
                    }

                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartObject)
                    {
                        var includeUsageSeen = false;
                        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                        {
                            var isIncludeUsage = reader.ValueTextEquals("include_usage"u8);
                            reader.Read();
                            if (!isIncludeUsage)
                            {
                                reader.Skip();
                                continue;
                            }

                            if (includeUsageSeen || reader.TokenType is not (JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null))
                            {
                                errorParam = "stream_options.include_usage";
                                return includeUsageSeen
                                    ? "'stream_options.include_usage' appears more than once; send it once."
                                    : "'stream_options.include_usage' must be a boolean.";
                            }

                            includeUsageSeen = true;
                            info.IncludeUsage = reader.TokenType == JsonTokenType.Null ? null : reader.TokenType == JsonTokenType.True;
                        }
                    }
                    else if (reader.TokenType != JsonTokenType.Null)
                    {
                        errorParam = "stream_options";
                        return "'stream_options' must be an object.";
                    }
                }
                else if (MaxTokensField(ref reader) is { } maxField)
                {
                    var name = maxField switch
                    {
                        ReadFields.MaxTokens => "max_tokens",
                        ReadFields.MaxCompletionTokens => "max_completion_tokens",
                        _ => "max_output_tokens",
                    };
                    if (Duplicate(ref seen, maxField, name, ref errorParam) is { } duplicate)
                    {
                        return duplicate;
                    }

                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var max) && max > 0)
                    {
                        // Several of the names: the provider reads one of them, so the reservation covers the largest.
                        info.MaxOutputTokens = Math.Max(info.MaxOutputTokens ?? 0, max);
                        maxTokensGiven |= maxField == ReadFields.MaxTokens;
                    }
                    else if (reader.TokenType != JsonTokenType.Null)
                    {
                        errorParam = name;
                        return $"'{name}' must be a positive integer.";
                    }
                }
                else if (reader.ValueTextEquals("n"u8) || reader.ValueTextEquals("best_of"u8))
                {
                    var isN = reader.ValueTextEquals("n"u8);
                    var name = isN ? "n" : "best_of";
                    if (Duplicate(ref seen, isN ? ReadFields.N : ReadFields.BestOf, name, ref errorParam) is { } duplicate)
                    {
                        return duplicate;
                    }

                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var count) && count > 0)
                    {
                        // Every completion generated is charged, so the reservation covers each of them.
                        info.Choices = Math.Max(info.Choices, count);
                    }
                    else if (reader.TokenType != JsonTokenType.Null)
                    {
                        errorParam = name;
                        return $"'{name}' must be a positive integer.";
                    }
                }
                else if (reader.ValueTextEquals("temperature"u8))
                {
                    if (Duplicate(ref seen, ReadFields.Temperature, "temperature", ref errorParam) is { } duplicate)
                    {
                        return duplicate;
                    }

                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out var temperature))
                    {
                        info.Deterministic |= temperature == 0;
                    }
                    else if (reader.TokenType != JsonTokenType.Null)
                    {
                        errorParam = "temperature";
                        return "'temperature' must be a number.";
                    }
                }
                else if (reader.ValueTextEquals("seed"u8))
                {
                    if (Duplicate(ref seen, ReadFields.Seed, "seed", ref errorParam) is { } duplicate)
                    {
                        return duplicate;
                    }

                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out _))
                    {
                        info.Deterministic = true;
                    }
                    else if (reader.TokenType != JsonTokenType.Null)
                    {
                        errorParam = "seed";
                        return "'seed' must be an integer.";
                    }
                }
                else if (PromptReader.IsPrompt(ref reader))
                {
                    // messages, input, prompt, instructions, tools, response_format...: see PromptReader.
                    PromptReader.Read(body, ref reader, ref info.Prompt);
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            if (reader.Read())
            {
                return "The request body has content after the JSON object.";
            }
        }
        catch (JsonException ex)
        {
            return $"The request body is not valid JSON: {ex.Message}";
        }

        if (string.IsNullOrEmpty(info.Model))
        {
            errorParam = "model";
            return "The request body has no 'model'. Name the model to use, e.g. \"model\": \"gpt-4o-mini\".";
        }

        if (endpoint == LlmEndpoint.Messages && !maxTokensGiven)
        {
            // The Messages API requires it, and it bounds the reservation (thinking budgets are part of it).
            errorParam = "max_tokens";
            return "'max_tokens' is required on /v1/messages and must be a positive integer.";
        }

        return null;
    }

    /// <summary>The worst-case output this request can produce, for reservations: every choice at its maximum.</summary>
    public readonly long MaxOutputFor(ModelOptions model) =>
        Choices * (MaxOutputTokens ?? (model.DefaultMaxOutputTokens > 0 ? model.DefaultMaxOutputTokens : 4096));

    /// <summary>
    /// A field the gateway reads must appear once: a provider that takes the last of two while the gateway read the
    /// first would generate what was never reserved for.
    /// </summary>
    private static string? Duplicate(ref ReadFields seen, ReadFields field, string name, ref string? errorParam)
    {
        if ((seen & field) != 0)
        {
            errorParam = name;
            return $"'{name}' appears more than once in the request body; send each field once.";
        }

        seen |= field;
        return null;
    }

    private static ReadFields? MaxTokensField(ref Utf8JsonReader reader) =>
        reader.ValueTextEquals("max_tokens"u8) ? ReadFields.MaxTokens
        : reader.ValueTextEquals("max_completion_tokens"u8) ? ReadFields.MaxCompletionTokens
        : reader.ValueTextEquals("max_output_tokens"u8) ? ReadFields.MaxOutputTokens
        : null;
}

/// <summary>The top-level fields the gateway reads, to refuse any that appears twice.</summary>
[Flags]
internal enum ReadFields
{
    None = 0,
    Model = 1,
    Stream = 2,
    StreamOptions = 4,
    MaxTokens = 8,
    MaxCompletionTokens = 16,
    MaxOutputTokens = 32,
    N = 64,
    BestOf = 128,
    Temperature = 256,
    Seed = 512,
}
