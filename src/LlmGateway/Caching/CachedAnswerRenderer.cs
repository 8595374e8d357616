using System.Buffers;
using System.Text.Json;
using LlmGateway.Configuration;

namespace LlmGateway.Caching;

/// <summary>
/// Renders a stored chat or text completion as the SSE stream a provider would have sent: a role chunk (chat), content
/// chunks of about one word each, tool calls, a finish chunk per choice, the usage chunk only when the caller asked
/// (<c>stream_options.include_usage</c>, with <c>"usage":null</c> on every other chunk, as OpenAI does), then [DONE].
/// </summary>
internal static class CachedAnswerRenderer
{
    public static byte[] RenderStream(CachedAnswer answer, bool includeUsage)
    {
        if (answer.Kind == CachedBodyKind.Sse)
        {
            return answer.Body;
        }

        if (answer.Endpoint == LlmEndpoint.Messages)
        {
            return MessagesStreamRenderer.Render(answer.Body);
        }

        using var document = JsonDocument.Parse(answer.Body);
        var root = document.RootElement;
        var chat = answer.Endpoint == LlmEndpoint.ChatCompletions;
        var output = new ArrayBufferWriter<byte>(answer.Body.Length * 2 + 256);
        using var writer = new Utf8JsonWriter(output);

        foreach (var choice in root.GetProperty("choices").EnumerateArray())
        {
            var index = choice.TryGetProperty("index", out var i) && i.TryGetInt32(out var n) ? n : 0;
            if (chat)
            {
                var message = choice.GetProperty("message");
                var content = message.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : null;
                Chunk(output, writer, root, chat, includeUsage, index, w =>
                {
                    w.WriteString("role", message.TryGetProperty("role", out var role) ? role.GetString() : "assistant");
                    if (content is null)
                    {
                        w.WriteNull("content");
                    }
                    else
                    {
                        w.WriteString("content", string.Empty);
                    }
                }, null);

                if (content is not null)
                {
                    foreach (var piece in Pieces(content))
                    {
                        Chunk(output, writer, root, chat, includeUsage, index, w => w.WriteString("content", piece), null);
                    }
                }

                if (message.TryGetProperty("refusal", out var refusal) && refusal.ValueKind == JsonValueKind.String)
                {
                    Chunk(output, writer, root, chat, includeUsage, index, w => w.WriteString("refusal", refusal.GetString()), null);
                }

                if (message.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array)
                {
                    var callIndex = 0;
                    foreach (var call in calls.EnumerateArray())
                    {
                        var at = callIndex++;
                        Chunk(output, writer, root, chat, includeUsage, index, w =>
                        {
                            w.WriteStartArray("tool_calls");
                            w.WriteStartObject();
                            w.WriteNumber("index", at);
                            foreach (var property in call.EnumerateObject())
                            {
                                property.WriteTo(w);
                            }

                            w.WriteEndObject();
                            w.WriteEndArray();
                        }, null);
                    }
                }
            }
            else
            {
                var text = choice.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : string.Empty;
                foreach (var piece in Pieces(text))
                {
                    Chunk(output, writer, root, chat, includeUsage, index, w => w.WriteString("text", piece), null);
                }
            }

            var finish = choice.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : "stop";
            Chunk(output, writer, root, chat, includeUsage, index, chat ? static _ => { } : static w => w.WriteString("text", string.Empty), finish);
        }

        if (includeUsage && root.TryGetProperty("usage", out var usage))
        {
            Begin(output, writer, root, chat);
            writer.WriteStartArray("choices");
            writer.WriteEndArray();
            writer.WritePropertyName("usage");
            usage.WriteTo(writer);
            End(output, writer);
        }

        output.Write("data: [DONE]\n\n"u8);
        return output.WrittenSpan.ToArray();
    }

    /// <summary>The text in pieces of about one word (each after the first carries its leading space), as providers stream it.</summary>
    internal static IEnumerable<string> Pieces(string text)
    {
        var start = 0;
        while (start < text.Length)
        {
            var end = start;
            while (end < text.Length && text[end] == ' ')
            {
                end++;
            }

            while (end < text.Length && text[end] != ' ')
            {
                end++;
            }

            yield return text[start..end];
            start = end;
        }
    }

    private static void Chunk(ArrayBufferWriter<byte> output, Utf8JsonWriter writer, JsonElement root, bool chat, bool includeUsage, int index, Action<Utf8JsonWriter> delta, string? finishReason)
    {
        Begin(output, writer, root, chat);
        writer.WriteStartArray("choices");
        writer.WriteStartObject();
        writer.WriteNumber("index", index);
        if (chat)
        {
            writer.WriteStartObject("delta");
            delta(writer);
            writer.WriteEndObject();
        }
        else
        {
            delta(writer);
        }

        writer.WriteNull("logprobs");
        writer.WriteString("finish_reason", finishReason);
        writer.WriteEndObject();
        writer.WriteEndArray();
        if (includeUsage)
        {
            writer.WriteNull("usage");
        }

        End(output, writer);
    }

    private static void Begin(ArrayBufferWriter<byte> output, Utf8JsonWriter writer, JsonElement root, bool chat)
    {
        output.Write("data: "u8);
        writer.Reset(output);
        writer.WriteStartObject();
        CachedAnswerJson.CopyProperty(writer, root, "id");
        writer.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
        CachedAnswerJson.CopyProperty(writer, root, "created");
        CachedAnswerJson.CopyProperty(writer, root, "model");
        CachedAnswerJson.CopyProperty(writer, root, "system_fingerprint");
    }

    private static void End(ArrayBufferWriter<byte> output, Utf8JsonWriter writer)
    {
        writer.WriteEndObject();
        writer.Flush();
        output.Write("\n\n"u8);
    }
}
