namespace LlmGateway.Caching;

/// <summary>
/// The cache store shared by every replica on one Redis: a plain string per entry (<c>{prefix}cache:{key}</c>) with a
/// Redis-side expiry. Calls are bounded by the store timeout; failures surface as exceptions the cache turns into misses.
/// </summary>
internal sealed class RedisResponseCacheStore : IResponseCacheStore
{
    private readonly CacheRedisConnection _redis;
    private readonly string _prefix;

    public RedisResponseCacheStore(CacheRedisConnection redis, string keyPrefix)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(keyPrefix);
        _redis = redis;
        _prefix = keyPrefix + "cache:";
    }

    /// <summary>The Redis key of a cache key.</summary>
    public string RedisKeyFor(string key) => _prefix + key;

    public async ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        var database = await _redis.DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var value = await _redis.BoundAsync(database.StringGetAsync(RedisKeyFor(key)), cancellationToken).ConfigureAwait(false);
        return value.IsNull ? null : (byte[]?)value;
    }

    public async ValueTask SetAsync(string key, byte[] value, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var database = await _redis.DatabaseAsync(cancellationToken).ConfigureAwait(false);
        await _redis.BoundAsync(database.StringSetAsync(RedisKeyFor(key), value, ttl), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask RemoveAsync(string key, CancellationToken cancellationToken = default)
    {
        var database = await _redis.DatabaseAsync(cancellationToken).ConfigureAwait(false);
        await _redis.BoundAsync(database.KeyDeleteAsync(RedisKeyFor(key)), cancellationToken).ConfigureAwait(false);
    }
}
