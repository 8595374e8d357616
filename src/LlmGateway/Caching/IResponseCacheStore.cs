namespace LlmGateway.Caching;

/// <summary>
/// Where cached answers live: opaque values under string keys, each with a time to live. Implementations:
/// <see cref="InMemoryResponseCacheStore"/> (one process, bounded in bytes) and <see cref="RedisResponseCacheStore"/>
/// (shared by every replica). Values are checked by the cache itself, so a store may hand back anything it holds.
/// </summary>
/// <remarks>A store may throw when its backend cannot answer; the cache then treats the call as a miss.</remarks>
public interface IResponseCacheStore
{
    /// <summary>The value under <paramref name="key"/>, or null when there is none (or it expired).</summary>
    ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>Stores (or replaces) the value for <paramref name="ttl"/>.</summary>
    ValueTask SetAsync(string key, byte[] value, TimeSpan ttl, CancellationToken cancellationToken = default);

    /// <summary>Forgets the value, e.g. one found corrupted.</summary>
    ValueTask RemoveAsync(string key, CancellationToken cancellationToken = default);
}
