using System.Buffers;
using System.Text.Json;

namespace LlmGateway.Forwarding;

/// <summary>
/// Rewrites the few fields the gateway changes in a request body (the model, stream_options.include_usage),
/// keeping every other property and its order. Only called when something changes: the common case
/// forwards the caller's bytes untouched.
/// </summary>
internal static class RequestBodyRewriter
{
    public static byte[] Rewrite(ReadOnlySpan<byte> body, string? model, bool forceIncludeUsage)
    {
        var reader = new Utf8JsonReader(body);
        using var document = JsonDocument.ParseValue(ref reader);
        var output = new ArrayBufferWriter<byte>(body.Length + 64);
        using (var writer = new Utf8JsonWriter(output))
        {
            writer.WriteStartObject();
            var wroteStreamOptions = false;
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (model is not null && property.NameEquals("model"u8))
                {
                    writer.WriteString("model"u8, model);
                }
                else if (forceIncludeUsage && property.NameEquals("stream_options"u8))
                {
                    WriteStreamOptions(writer, property.Value);
                    wroteStreamOptions = true;
                }
                else
                {
                    property.WriteTo(writer);
                }
            }

            if (forceIncludeUsage && !wroteStreamOptions)
            {
                writer.WriteStartObject("stream_options"u8);
                writer.WriteBoolean("include_usage"u8, true);
                writer.WriteEndObject();
            }

            writer.WriteEndObject();
        }

        return output.WrittenSpan.ToArray();
    }

    private static void WriteStreamOptions(Utf8JsonWriter writer, JsonElement existing)
    {
        writer.WriteStartObject("stream_options"u8);
        if (existing.ValueKind == JsonValueKind.Object)
        {
            foreach (var option in existing.EnumerateObject())
            {
                if (!option.NameEquals("include_usage"u8))
                {
                    option.WriteTo(writer);
                }
            }
        }

        writer.WriteBoolean("include_usage"u8, true);
        writer.WriteEndObject();
    }
}
