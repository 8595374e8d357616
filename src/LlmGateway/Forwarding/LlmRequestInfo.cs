using System.Text.Json;
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

    /// <summary>UTF-8 bytes of the prompt's string values, for the token estimate.</summary>
    public long PromptTextBytes;

    public int MessageCount;

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
                else if (reader.ValueTextEquals("messages"u8) || reader.ValueTextEquals("input"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartArray)
                    {
                        var depth = reader.CurrentDepth;
                        while (reader.Read() && !(reader.TokenType == JsonTokenType.EndArray && reader.CurrentDepth == depth))
                        {
                            if (reader.CurrentDepth == depth + 1 && reader.TokenType is JsonTokenType.StartObject or JsonTokenType.String)
                            {
                                info.MessageCount++;
                            }

                            CountText(ref reader, ref info);
                        }
                    }
                    else
                    {
                        CountValue(ref reader, ref info);
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
                else if (reader.ValueTextEquals("user"u8) || reader.ValueTextEquals("metadata"u8))
                {
                    reader.Read();
                    reader.Skip();
                }
                else
                {
                    // prompt, instructions, tools, functions, response_format...: their text is all prompt.
                    reader.Read();
                    CountValue(ref reader, ref info);
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

    private static void CountValue(ref Utf8JsonReader reader, ref LlmRequestInfo info)
    {
        if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
        {
            var depth = reader.CurrentDepth;
            while (reader.Read() && reader.CurrentDepth > depth)
            {
                CountText(ref reader, ref info);
            }
        }
        else
        {
            CountText(ref reader, ref info);
        }
    }

    private static void CountText(ref Utf8JsonReader reader, ref LlmRequestInfo info)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            info.PromptTextBytes += reader.ValueSpan.Length;
        }
    }
}
