using System.Buffers;
using System.Text;
using System.Text.Json;
using LlmGateway.Accounting;
using LlmGateway.Caching;
using LlmGateway.Configuration;

namespace LlmGateway.Replay;

/// <summary>
/// One step of a recorded run as stored (one UTF-8 JSON object, also its line in the JSONL export): the request as
/// the caller sent it with its canonical hash, and the answer it got, byte for byte, with its usage and cost.
/// </summary>
internal static class RecordedStep
{
    public static byte[] Serialize(string user, string requestHash, ReadOnlySpan<byte> request, bool stream, CachedAnswer answer)
    {
        var output = new ArrayBufferWriter<byte>(request.Length + answer.Body.Length + 512);
        using (var writer = new Utf8JsonWriter(output))
        {
            writer.WriteStartObject();
            writer.WriteString("user", user);
            writer.WriteString("endpoint", answer.Endpoint.ToString());
            writer.WriteString("model", answer.Model);
            writer.WriteString("request_hash", requestHash);
            writer.WriteString("recorded_at", answer.CreatedAt);
            writer.WriteBoolean("stream", stream);
            writer.WritePropertyName("request");
            writer.WriteRawValue(request, skipInputValidation: true);
            if (answer.Kind == CachedBodyKind.Json)
            {
                writer.WritePropertyName("response");
                writer.WriteRawValue(answer.Body, skipInputValidation: true);
            }
            else
            {
                writer.WriteString("response_sse", Encoding.UTF8.GetString(answer.Body));
            }

            writer.WriteStartObject("usage");
            writer.WriteNumber("input_tokens", answer.Usage.InputTokens);
            writer.WriteNumber("cached_input_tokens", answer.Usage.CachedInputTokens);
            writer.WriteNumber("output_tokens", answer.Usage.OutputTokens);
            writer.WriteNumber("reasoning_tokens", answer.Usage.ReasoningTokens);
            writer.WriteNumber("cache_write_tokens", answer.Usage.CacheWriteTokens);
            writer.WriteEndObject();
            writer.WriteNumber("cost_usd", answer.CostUsd);
            writer.WriteEndObject();
        }

        return output.WrittenSpan.ToArray();
    }

    /// <summary>The recording user, request hash and answer of a stored step, or null when it cannot be read.</summary>
    public static (string User, string RequestHash, CachedAnswer Answer)? Deserialize(byte[] step)
    {
        try
        {
            using var document = JsonDocument.Parse(step);
            var root = document.RootElement;
            if (!Enum.TryParse<LlmEndpoint>(root.GetProperty("endpoint").GetString(), out var endpoint))
            {
                return null;
            }

            var (kind, body) = root.TryGetProperty("response", out var response)
                ? (CachedBodyKind.Json, Encoding.UTF8.GetBytes(response.GetRawText()))
                : (CachedBodyKind.Sse, Encoding.UTF8.GetBytes(root.GetProperty("response_sse").GetString()!));
            var usage = root.GetProperty("usage");
            var answer = new CachedAnswer(endpoint, root.GetProperty("model").GetString()!, kind, body,
                new TokenUsage(usage.GetProperty("input_tokens").GetInt64(), usage.GetProperty("cached_input_tokens").GetInt64(), usage.GetProperty("output_tokens").GetInt64(), usage.GetProperty("reasoning_tokens").GetInt64(),
                    usage.TryGetProperty("cache_write_tokens", out var written) ? written.GetInt64() : 0),
                root.GetProperty("cost_usd").GetDecimal(), root.GetProperty("recorded_at").GetDateTimeOffset(), DateTimeOffset.MaxValue);
            return (root.GetProperty("user").GetString()!, root.GetProperty("request_hash").GetString()!, answer);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    /// <summary>The step as a JSONL line: <c>{"step":n,...}</c> and a newline.</summary>
    public static void WriteLine(IBufferWriter<byte> output, int step, byte[] stored)
    {
        output.Write(Encoding.UTF8.GetBytes($"{{\"step\":{step},"));
        output.Write(stored.AsSpan(1));
        output.Write("\n"u8);
    }
}
