using System.Buffers;
using System.Text.Json;

namespace LlmGateway.Caching;

/// <summary>
/// Renders a stored Anthropic message as the stream of events the Messages API would have sent: message_start (the
/// message without content, its input usage), per content block a content_block_start, its deltas (text in pieces of
/// about one word, a tool's input as one input_json_delta, thinking and its signature) and a content_block_stop, then
/// message_delta (stop reason, output tokens) and message_stop.
/// </summary>
internal static class MessagesStreamRenderer
{
    public static byte[] Render(byte[] message)
    {
        using var document = JsonDocument.Parse(message);
        var root = document.RootElement;
        var output = new ArrayBufferWriter<byte>(message.Length * 3 + 512);
        using var writer = new Utf8JsonWriter(output);

        Event(output, writer, "message_start", w =>
        {
            w.WriteStartObject("message");
            foreach (var property in root.EnumerateObject())
            {
                if (property.NameEquals("content"))
                {
                    w.WriteStartArray("content");
                    w.WriteEndArray();
                }
                else if (property.NameEquals("stop_reason") || property.NameEquals("stop_sequence"))
                {
                    w.WriteNull(property.Name);
                }
                else if (property.NameEquals("usage") && property.Value.ValueKind == JsonValueKind.Object)
                {
                    w.WriteStartObject("usage");
                    foreach (var figure in property.Value.EnumerateObject())
                    {
                        if (figure.NameEquals("output_tokens"))
                        {
                            w.WriteNumber("output_tokens", 0);
                        }
                        else
                        {
                            figure.WriteTo(w);
                        }
                    }

                    w.WriteEndObject();
                }
                else
                {
                    property.WriteTo(w);
                }
            }

            w.WriteEndObject();
        });

        var index = 0;
        if (root.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.Array)
        {
            foreach (var block in content.EnumerateArray())
            {
                WriteBlock(output, writer, index++, block);
            }
        }

        Event(output, writer, "message_delta", w =>
        {
            w.WriteStartObject("delta");
            CachedAnswerJson.CopyProperty(w, root, "stop_reason");
            CachedAnswerJson.CopyProperty(w, root, "stop_sequence");
            w.WriteEndObject();
            w.WriteStartObject("usage");
            w.WriteNumber("output_tokens", root.TryGetProperty("usage", out var usage) && usage.TryGetProperty("output_tokens", out var tokens) && tokens.TryGetInt64(out var n) ? n : 0);
            w.WriteEndObject();
        });
        Event(output, writer, "message_stop", static _ => { });
        return output.WrittenSpan.ToArray();
    }

    private static void WriteBlock(ArrayBufferWriter<byte> output, Utf8JsonWriter writer, int index, JsonElement block)
    {
        var type = block.TryGetProperty("type", out var t) ? t.GetString() : null;
        Event(output, writer, "content_block_start", w =>
        {
            w.WriteNumber("index", index);
            w.WriteStartObject("content_block");
            foreach (var property in block.EnumerateObject())
            {
                if (type == "text" && property.NameEquals("text"))
                {
                    w.WriteString("text", string.Empty);
                }
                else if (type is "tool_use" or "server_tool_use" && property.NameEquals("input"))
                {
                    w.WriteStartObject("input");
                    w.WriteEndObject();
                }
                else if (type == "thinking" && (property.NameEquals("thinking") || property.NameEquals("signature")))
                {
                    w.WriteString(property.Name, string.Empty);
                }
                else
                {
                    property.WriteTo(w);
                }
            }

            w.WriteEndObject();
        });

        switch (type)
        {
            case "text" when block.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String:
                foreach (var piece in CachedAnswerRenderer.Pieces(text.GetString()!))
                {
                    Delta(output, writer, index, "text_delta", "text", piece);
                }

                break;
            case "tool_use" or "server_tool_use" when block.TryGetProperty("input", out var input):
                Delta(output, writer, index, "input_json_delta", "partial_json", input.GetRawText());
                break;
            case "thinking":
                if (block.TryGetProperty("thinking", out var thinking) && thinking.ValueKind == JsonValueKind.String)
                {
                    Delta(output, writer, index, "thinking_delta", "thinking", thinking.GetString()!);
                }

                if (block.TryGetProperty("signature", out var signature) && signature.ValueKind == JsonValueKind.String)
                {
                    Delta(output, writer, index, "signature_delta", "signature", signature.GetString()!);
                }

                break;
        }

        Event(output, writer, "content_block_stop", w => w.WriteNumber("index", index));
    }

    private static void Delta(ArrayBufferWriter<byte> output, Utf8JsonWriter writer, int index, string type, string name, string value) =>
        Event(output, writer, "content_block_delta", w =>
        {
            w.WriteNumber("index", index);
            w.WriteStartObject("delta");
            w.WriteString("type", type);
            w.WriteString(name, value);
            w.WriteEndObject();
        });

    private static void Event(ArrayBufferWriter<byte> output, Utf8JsonWriter writer, string type, Action<Utf8JsonWriter> body)
    {
        output.Write("event: "u8);
        output.Write(System.Text.Encoding.UTF8.GetBytes(type));
        output.Write("\ndata: "u8);
        writer.Reset(output);
        writer.WriteStartObject();
        writer.WriteString("type", type);
        body(writer);
        writer.WriteEndObject();
        writer.Flush();
        output.Write("\n\n"u8);
    }
}
