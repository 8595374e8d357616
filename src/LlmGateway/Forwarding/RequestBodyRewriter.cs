using System.Buffers;
using System.Text.Json;

namespace LlmGateway.Forwarding;

/// <summary>
/// Rewrites the few fields the gateway changes in a request body (the model, stream_options.include_usage)
/// by splicing bytes: everything else is copied exactly as the caller sent it (no re-escaping of non-ASCII
/// text, no reordering). Only called when something changes: the common case forwards the caller's bytes.
/// </summary>
internal static class RequestBodyRewriter
{
    public static byte[] Rewrite(ReadOnlySpan<byte> body, string? model, bool forceIncludeUsage)
    {
        // Locate the byte ranges of the top-level values to replace.
        Range? modelValue = null;
        Range? streamOptionsValue = null;
        var closingBrace = -1;
        var memberCount = 0;
        var reader = new Utf8JsonReader(body);
        reader.Read();
        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == 0)
            {
                closingBrace = (int)reader.TokenStartIndex;
                break;
            }

            memberCount++;
            var isModel = reader.ValueTextEquals("model"u8);
            var isStreamOptions = reader.ValueTextEquals("stream_options"u8);
            reader.Read();
            var valueStart = (int)reader.TokenStartIndex;
            reader.Skip();
            var valueEnd = (int)reader.BytesConsumed;
            if (isModel)
            {
                modelValue = valueStart..valueEnd;
            }
            else if (isStreamOptions)
            {
                streamOptionsValue = valueStart..valueEnd;
            }
        }

        var output = new ArrayBufferWriter<byte>(body.Length + 64);
        var edits = new List<(Range At, byte[] With)>(2);
        if (model is not null && modelValue is { } m)
        {
            edits.Add((m, JsonString(model)));
        }

        if (forceIncludeUsage)
        {
            if (streamOptionsValue is { } s)
            {
                edits.Add((s, StreamOptions(body[s])));
            }
            else
            {
                var insert = memberCount == 0 ? "\"stream_options\":{\"include_usage\":true}"u8 : ",\"stream_options\":{\"include_usage\":true}"u8;
                edits.Add((closingBrace..closingBrace, insert.ToArray()));
            }
        }

        edits.Sort(static (a, b) => a.At.Start.Value.CompareTo(b.At.Start.Value));
        var position = 0;
        foreach (var (at, with) in edits)
        {
            output.Write(body[position..at.Start.Value]);
            output.Write(with);
            position = at.End.Value;
        }

        output.Write(body[position..]);
        return output.WrittenSpan.ToArray();
    }

    private static byte[] JsonString(string value)
    {
        var buffer = new ArrayBufferWriter<byte>(value.Length + 2);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStringValue(value);
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The caller's stream_options with include_usage forced on; its other members kept byte for byte.</summary>
    private static byte[] StreamOptions(ReadOnlySpan<byte> existing)
    {
        var buffer = new ArrayBufferWriter<byte>(existing.Length + 24);
        buffer.Write("{"u8);
        var reader = new Utf8JsonReader(existing);
        reader.Read();
        if (reader.TokenType == JsonTokenType.StartObject)
        {
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var start = (int)reader.TokenStartIndex;
                var isIncludeUsage = reader.ValueTextEquals("include_usage"u8);
                reader.Read();
                reader.Skip();
                if (!isIncludeUsage)
                {
                    buffer.Write(existing[start..(int)reader.BytesConsumed]);
                    buffer.Write(","u8);
                }
            }
        }

        buffer.Write("\"include_usage\":true}"u8);
        return buffer.WrittenSpan.ToArray();
    }
}
