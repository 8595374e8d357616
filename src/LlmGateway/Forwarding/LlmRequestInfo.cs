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

    /// <summary>max_tokens, max_completion_tokens or max_output_tokens, whichever was given.</summary>
    public long? MaxOutputTokens;

    /// <summary>The prompt's size (text bytes, messages, tool definitions), for its token bound.</summary>
    public PromptSize Prompt;

    /// <summary>temperature 0 or a seed: the same request should get the same answer (cacheable).</summary>
    public bool Deterministic;

    /// <summary>
    /// Parses the body. Returns an error message naming the problem when it is not a JSON object, is
    /// malformed, or lacks a string "model".
    /// </summary>
    public static string? TryParse(ReadOnlySpan<byte> body, out LlmRequestInfo info, out string? errorParam)
    {
        info = default;
        errorParam = null;
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
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartObject)
                    {
                        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                        {
                            var isIncludeUsage = reader.ValueTextEquals("include_usage"u8);
                            reader.Read();
                            if (isIncludeUsage && reader.TokenType is JsonTokenType.True or JsonTokenType.False)
                            {
                                info.IncludeUsage = reader.TokenType == JsonTokenType.True;
                            }
                            else
                            {
                                reader.Skip();
                            }
                        }
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else if (reader.ValueTextEquals("max_tokens"u8) || reader.ValueTextEquals("max_completion_tokens"u8) || reader.ValueTextEquals("max_output_tokens"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var max) && max > 0)
                    {
                        info.MaxOutputTokens = max;
                    }
                    else if (reader.TokenType != JsonTokenType.Null)
                    {
                        errorParam = "max_tokens";
                        return "The maximum output tokens must be a positive integer.";
                    }
                }
                else if (reader.ValueTextEquals("temperature"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out var temperature) && temperature == 0)
                    {
                        info.Deterministic = true;
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else if (reader.ValueTextEquals("seed"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number)
                    {
                        info.Deterministic = true;
                    }
                    else
                    {
                        reader.Skip();
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

        return null;
    }

    /// <summary>The worst-case output this request can produce, for reservations.</summary>
    public readonly long MaxOutputFor(ModelOptions model) =>
        MaxOutputTokens ?? (model.DefaultMaxOutputTokens > 0 ? model.DefaultMaxOutputTokens : 4096);
}
