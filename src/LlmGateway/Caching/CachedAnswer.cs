using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using LlmGateway.Accounting;
using LlmGateway.Configuration;

namespace LlmGateway.Caching;

/// <summary>How an answer is stored.</summary>
internal enum CachedBodyKind
{
    /// <summary>A complete non-streamed JSON answer (a streamed chat or text completion is assembled into one), served in either form.</summary>
    Json,

    /// <summary>The raw events of a stream that has no JSON form here (/v1/responses): served to streaming requests only.</summary>
    Sse,
}

/// <summary>A complete 200 answer as stored by the cache and by run recordings, with what it cost when it was made.</summary>
internal sealed record CachedAnswer(LlmEndpoint Endpoint, string Model, CachedBodyKind Kind, byte[] Body, TokenUsage Usage, decimal CostUsd, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt)
{
    /// <summary>Whether this answer can serve a request in the given form.</summary>
    public bool CanServe(bool stream) => stream
        ? Kind == CachedBodyKind.Sse || Endpoint is LlmEndpoint.ChatCompletions or LlmEndpoint.Completions or LlmEndpoint.Messages
        : Kind == CachedBodyKind.Json;
}

/// <summary>
/// The stored form of a <see cref="CachedAnswer"/>: <c>"LGC1"</c>, the payload's length (int32 LE), its SHA-256, then
/// the payload (metadata JSON length, metadata JSON, body). A value whose length or checksum does not match is
/// rejected, so a truncated or corrupted entry is never served.
/// </summary>
internal static class CachedAnswerSerializer
{
    private const int HeaderSize = 4 + 4 + 32;
    private static ReadOnlySpan<byte> Magic => "LGC1"u8;

    public static byte[] Serialize(CachedAnswer answer)
    {
        var meta = JsonSerializer.SerializeToUtf8Bytes(new Meta
        {
            Endpoint = answer.Endpoint.ToString(),
            Model = answer.Model,
            Kind = answer.Kind.ToString(),
            Created = answer.CreatedAt.ToUnixTimeMilliseconds(),
            Expires = answer.ExpiresAt.ToUnixTimeMilliseconds(),
            CostUsd = answer.CostUsd.ToString(CultureInfo.InvariantCulture),
            InputTokens = answer.Usage.InputTokens,
            CachedInputTokens = answer.Usage.CachedInputTokens,
            OutputTokens = answer.Usage.OutputTokens,
            ReasoningTokens = answer.Usage.ReasoningTokens,
            CacheWriteTokens = answer.Usage.CacheWriteTokens,
        });
        var payloadLength = 4 + meta.Length + answer.Body.Length;
        var value = new byte[HeaderSize + payloadLength];
        Magic.CopyTo(value);
        BinaryPrimitives.WriteInt32LittleEndian(value.AsSpan(4), payloadLength);
        var payload = value.AsSpan(HeaderSize);
        BinaryPrimitives.WriteInt32LittleEndian(payload, meta.Length);
        meta.CopyTo(payload[4..]);
        answer.Body.CopyTo(payload[(4 + meta.Length)..]);
        SHA256.HashData(payload, value.AsSpan(8, 32));
        return value;
    }

    /// <summary>The answer, or null when the value is not one intact entry.</summary>
    public static CachedAnswer? Deserialize(ReadOnlySpan<byte> value)
    {
        if (value.Length < HeaderSize + 4 || !value.StartsWith(Magic))
        {
            return null;
        }

        var payloadLength = BinaryPrimitives.ReadInt32LittleEndian(value[4..]);
        if (payloadLength != value.Length - HeaderSize)
        {
            return null;
        }

        var payload = value[HeaderSize..];
        Span<byte> checksum = stackalloc byte[32];
        SHA256.HashData(payload, checksum);
        if (!CryptographicOperations.FixedTimeEquals(checksum, value.Slice(8, 32)))
        {
            return null;
        }

        var metaLength = BinaryPrimitives.ReadInt32LittleEndian(payload);
        if (metaLength < 0 || metaLength > payload.Length - 4)
        {
            return null;
        }

        try
        {
            var meta = JsonSerializer.Deserialize<Meta>(payload.Slice(4, metaLength));
            if (meta is null || !Enum.TryParse<LlmEndpoint>(meta.Endpoint, out var endpoint) || !Enum.TryParse<CachedBodyKind>(meta.Kind, out var kind)
                || !decimal.TryParse(meta.CostUsd, NumberStyles.Number, CultureInfo.InvariantCulture, out var cost) || meta.Model is null)
            {
                return null;
            }

            return new CachedAnswer(endpoint, meta.Model, kind, payload[(4 + metaLength)..].ToArray(),
                new TokenUsage(meta.InputTokens, meta.CachedInputTokens, meta.OutputTokens, meta.ReasoningTokens, meta.CacheWriteTokens), cost,
                DateTimeOffset.FromUnixTimeMilliseconds(meta.Created), DateTimeOffset.FromUnixTimeMilliseconds(meta.Expires));
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private sealed class Meta
    {
        public string? Endpoint { get; set; }
        public string? Model { get; set; }
        public string? Kind { get; set; }
        public long Created { get; set; }
        public long Expires { get; set; }
        public string? CostUsd { get; set; }
        public long InputTokens { get; set; }
        public long CachedInputTokens { get; set; }
        public long OutputTokens { get; set; }
        public long ReasoningTokens { get; set; }

        /// <summary>Anthropic's cache writes; absent (0) in entries stored before it was kept.</summary>
        public long CacheWriteTokens { get; set; }
    }
}
