namespace LlmGateway.Tools;

/// <summary>
/// Remembers tool calls by idempotency key so a repeated call is executed once: the first caller claims the key,
/// runs the call and stores its response; repeats see the claim (in flight) or the stored response. Implementations:
/// <see cref="InMemoryIdempotencyStore"/> (one process) and <see cref="RedisIdempotencyStore"/> (shared by replicas).
/// </summary>
/// <remarks>
/// Keys arrive already scoped (gateway user + tool + caller's key, hashed). A claim expires by itself after its TTL,
/// so a gateway that dies mid-call does not block the key forever. Store failures surface as
/// <see cref="IdempotencyStoreUnavailableException"/> within a bounded time.
/// </remarks>
public interface IIdempotencyStore
{
    /// <summary>Claims the key for a new call, or reports that it is in flight, completed, or used with another request.</summary>
    ValueTask<IdempotencyClaim> TryBeginAsync(string key, string requestHash, TimeSpan claimTtl, CancellationToken cancellationToken = default);

    /// <summary>Stores the response of a claimed call for <paramref name="ttl"/>; a no-op when the claim was lost (expired).</summary>
    ValueTask CompleteAsync(string key, IdempotencyClaim claim, StoredToolResponse response, TimeSpan ttl, CancellationToken cancellationToken = default);

    /// <summary>Gives a claim up (the call never produced a response), so a repeat executes it.</summary>
    ValueTask AbandonAsync(string key, IdempotencyClaim claim, CancellationToken cancellationToken = default);
}

/// <summary>What <see cref="IIdempotencyStore.TryBeginAsync"/> found.</summary>
public enum IdempotencyState
{
    /// <summary>The key is now this caller's: execute the call, then complete or abandon the claim.</summary>
    Claimed,

    /// <summary>Another call with this key and request is still running.</summary>
    InFlight,

    /// <summary>A call with this key and request completed; <see cref="IdempotencyClaim.Response"/> is its response.</summary>
    Completed,

    /// <summary>The key was used for a different request.</summary>
    KeyReused,
}

/// <summary>The answer of <see cref="IIdempotencyStore.TryBeginAsync"/>.</summary>
public sealed record IdempotencyClaim(IdempotencyState State, string RequestHash, string? Token = null, StoredToolResponse? Response = null);

/// <summary>A tool's response as stored for replay: status, headers and body (null when it was too large to keep).</summary>
public sealed record StoredToolResponse(int Status, IReadOnlyList<KeyValuePair<string, string[]>> Headers, byte[]? Body)
{
    /// <summary>Binary-safe, compact form for a shared store: JSON with the body in base64.</summary>
    public byte[] Serialize()
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256 + (Body?.Length ?? 0) * 4 / 3);
        using (var writer = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("s", Status);
            writer.WriteStartArray("h");
            foreach (var (name, values) in Headers)
            {
                writer.WriteStartArray();
                writer.WriteStringValue(name);
                foreach (var value in values)
                {
                    writer.WriteStringValue(value);
                }

                writer.WriteEndArray();
            }

            writer.WriteEndArray();
            if (Body is not null)
            {
                writer.WriteBase64String("b", Body);
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static StoredToolResponse Deserialize(ReadOnlySpan<byte> bytes)
    {
        using var document = System.Text.Json.JsonDocument.Parse(bytes.ToArray());
        var root = document.RootElement;
        var headers = new List<KeyValuePair<string, string[]>>();
        foreach (var header in root.GetProperty("h").EnumerateArray())
        {
            var parts = header.EnumerateArray().Select(e => e.GetString()!).ToArray();
            headers.Add(new(parts[0], parts[1..]));
        }

        var body = root.TryGetProperty("b", out var b) ? b.GetBytesFromBase64() : null;
        return new StoredToolResponse(root.GetProperty("s").GetInt32(), headers, body);
    }
}

/// <summary>The idempotency store could not answer in time; the gateway applies Gateway:Store:OnUnavailable.</summary>
public sealed class IdempotencyStoreUnavailableException : Exception
{
    public IdempotencyStoreUnavailableException()
        : this("The idempotency store is unavailable.")
    {
    }

    public IdempotencyStoreUnavailableException(string message)
        : base(message)
    {
    }

    public IdempotencyStoreUnavailableException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
