using System.Text.Json;

namespace LlmGateway.Accounting;

/// <summary>What one JSON document from upstream (a whole response or one SSE event's data) says.</summary>
internal struct JsonPayloadInfo
{
    public bool HasUsage;
    public TokenUsage Usage;

    /// <summary>A top-level "choices" array was present and empty (OpenAI's usage-only stream chunk).</summary>
    public bool ChoicesEmpty;

    /// <summary>Bytes of generated text seen (content, text, delta, arguments, refusal strings).</summary>
    public long TextBytes;

    /// <summary>A top-level "error" object: the upstream reported a failure inside a 200 stream.</summary>
    public bool IsError;

    /// <summary>Anthropic's usage as reported (when read as a Messages payload); <see cref="Usage"/> is its sum.</summary>
    public MessagesUsage Messages;
}

/// <summary>
/// Reads usage and generated-text size from OpenAI-shaped JSON in one forward pass with Utf8JsonReader,
/// without building a document. Handles chat/completions, completions, embeddings and responses shapes
/// (for Responses API stream events, the usage inside "response"), and Anthropic's Messages shapes (a message,
/// and the stream events, message_start's usage inside "message").
/// </summary>
internal static class UsageReader
{
    /// <summary>Returns false when the bytes are not one valid JSON object.</summary>
    /// <param name="text">When given, receives the generated text itself (for models whose tokens the gateway can count).</param>
    /// <param name="messages">Read as Anthropic's Messages API: its usage names and a nested "message".</param>
    public static bool TryRead(ReadOnlySpan<byte> json, out JsonPayloadInfo info, DeliveredText? text = null, bool messages = false)
    {
        info = default;
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            ReadObject(ref reader, ref info, depth: 1, inResponse: false, text, messages);
            return !reader.Read();
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static void ReadObject(ref Utf8JsonReader reader, ref JsonPayloadInfo info, int depth, bool inResponse, DeliveredText? text, bool messages = false)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var atTop = depth == 1;
            if ((atTop || (inResponse && depth == 2)) && reader.ValueTextEquals("usage"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartObject)
                {
                    if (messages)
                    {
                        info.Messages = ReadMessagesUsage(ref reader);
                        info.Usage = info.Messages.ToTokenUsage();
                    }
                    else
                    {
                        info.Usage = ReadUsage(ref reader);
                    }

                    info.HasUsage = true;
                }
                else
                {
                    reader.Skip();
                }

                continue;
            }

            if (atTop && reader.ValueTextEquals("choices"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartArray)
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.EndArray)
                    {
                        info.ChoicesEmpty = true;
                    }
                    else
                    {
                        ReadValue(ref reader, ref info, depth + 1, countText: false, text);
                        ReadArrayRest(ref reader, ref info, depth + 1, text);
                    }
                }
                else
                {
                    ReadValue(ref reader, ref info, depth + 1, countText: false, text);
                }

                continue;
            }

            if (atTop && reader.ValueTextEquals("error"u8))
            {
                reader.Read();
                info.IsError = reader.TokenType == JsonTokenType.StartObject;
                reader.Skip();
                continue;
            }

            var countText = IsTextProperty(ref reader);
            var isResponse = atTop && (messages ? reader.ValueTextEquals("message"u8) : reader.ValueTextEquals("response"u8));
            reader.Read();
            if (isResponse && reader.TokenType == JsonTokenType.StartObject)
            {
                ReadObject(ref reader, ref info, depth + 1, inResponse: true, text, messages);
            }
            else
            {
                ReadValue(ref reader, ref info, depth + 1, countText, text);
            }
        }
    }

    private static void ReadArrayRest(ref Utf8JsonReader reader, ref JsonPayloadInfo info, int depth, DeliveredText? text)
    {
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            ReadValue(ref reader, ref info, depth, countText: false, text);
        }
    }

    private static void ReadValue(ref Utf8JsonReader reader, ref JsonPayloadInfo info, int depth, bool countText, DeliveredText? text)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.StartObject:
                ReadObject(ref reader, ref info, depth, inResponse: false, text);
                break;
            case JsonTokenType.StartArray:
                ReadArrayRest(ref reader, ref info, depth, text);
                break;
            case JsonTokenType.String when countText:
                info.TextBytes += reader.HasValueSequence ? reader.ValueSequence.Length : reader.ValueSpan.Length;
                text?.Append(ref reader);
                break;
        }
    }

    private static bool IsTextProperty(ref Utf8JsonReader reader) =>
        reader.ValueTextEquals("content"u8) || reader.ValueTextEquals("text"u8) || reader.ValueTextEquals("delta"u8)
        || reader.ValueTextEquals("arguments"u8) || reader.ValueTextEquals("refusal"u8) || reader.ValueTextEquals("reasoning_content"u8)
        || reader.ValueTextEquals("partial_json"u8) || reader.ValueTextEquals("thinking"u8);

    /// <summary>Anthropic's usage: each figure present or not (null counts as absent).</summary>
    private static MessagesUsage ReadMessagesUsage(ref Utf8JsonReader reader)
    {
        var usage = default(MessagesUsage);
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("input_tokens"u8))
            {
                usage.Input = ReadOptionalLong(ref reader);
            }
            else if (reader.ValueTextEquals("output_tokens"u8))
            {
                usage.Output = ReadOptionalLong(ref reader);
            }
            else if (reader.ValueTextEquals("cache_read_input_tokens"u8))
            {
                usage.CacheRead = ReadOptionalLong(ref reader);
            }
            else if (reader.ValueTextEquals("cache_creation_input_tokens"u8))
            {
                usage.CacheWrite = ReadOptionalLong(ref reader);
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return usage;
    }

    private static long? ReadOptionalLong(ref Utf8JsonReader reader)
    {
        reader.Read();
        if (reader.TokenType != JsonTokenType.Number)
        {
            reader.Skip();
            return null;
        }

        return reader.TryGetInt64(out var value) && value > 0 ? value : 0;
    }

    private static TokenUsage ReadUsage(ref Utf8JsonReader reader)
    {
        long input = 0, cached = 0, output = 0, reasoning = 0;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("prompt_tokens"u8) || reader.ValueTextEquals("input_tokens"u8))
            {
                input = ReadLong(ref reader);
            }
            else if (reader.ValueTextEquals("completion_tokens"u8) || reader.ValueTextEquals("output_tokens"u8))
            {
                output = ReadLong(ref reader);
            }
            else if (reader.ValueTextEquals("prompt_tokens_details"u8) || reader.ValueTextEquals("input_tokens_details"u8))
            {
                cached = ReadDetail(ref reader, "cached_tokens"u8, cached);
            }
            else if (reader.ValueTextEquals("completion_tokens_details"u8) || reader.ValueTextEquals("output_tokens_details"u8))
            {
                reasoning = ReadDetail(ref reader, "reasoning_tokens"u8, reasoning);
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return new TokenUsage(input, cached, output, reasoning);
    }

    private static long ReadDetail(ref Utf8JsonReader reader, ReadOnlySpan<byte> name, long current)
    {
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return current;
        }

        var value = current;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals(name))
            {
                value = ReadLong(ref reader);
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return value;
    }

    private static long ReadLong(ref Utf8JsonReader reader)
    {
        reader.Read();
        return reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value) && value > 0 ? value : 0;
    }
}
