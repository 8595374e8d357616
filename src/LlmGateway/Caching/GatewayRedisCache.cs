using LlmGateway.Redis;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Caching.StackExchangeRedis;
using Microsoft.Extensions.Options;

namespace LlmGateway.Caching;

/// <summary>
/// The <see cref="IDistributedCache"/> the gateway registers when Gateway:Redis is set: ASP.NET Core's
/// <see cref="RedisCache"/> on the gateway's one multiplexer, its keys under Gateway:Store:KeyPrefix + <c>cache:</c>
/// (one Redis hash per entry, with a Redis-side expiry).
/// </summary>
/// <remarks>
/// A wrapper, and not disposable, because <see cref="RedisCache.Dispose"/> closes the multiplexer it was handed,
/// which the budget, idempotency and recording stores share: the container would close it under them at shutdown.
/// </remarks>
internal sealed class GatewayRedisCache : IDistributedCache
{
    private readonly RedisCache _cache;

    public GatewayRedisCache(RedisConnection redis, string keyPrefix)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(keyPrefix);
        _cache = new RedisCache(Options.Create(new RedisCacheOptions
        {
            ConnectionMultiplexerFactory = async () => await redis.ConnectAsync().ConfigureAwait(false),
            InstanceName = keyPrefix + CacheKeys.Segment,
        }));
    }

    public byte[]? Get(string key) => _cache.Get(key);

    public Task<byte[]?> GetAsync(string key, CancellationToken token = default) => _cache.GetAsync(key, token);

    public void Set(string key, byte[] value, DistributedCacheEntryOptions options) => _cache.Set(key, value, options);

    public Task SetAsync(string key, byte[] value, DistributedCacheEntryOptions options, CancellationToken token = default) => _cache.SetAsync(key, value, options, token);

    public void Refresh(string key) => _cache.Refresh(key);

    public Task RefreshAsync(string key, CancellationToken token = default) => _cache.RefreshAsync(key, token);

    public void Remove(string key) => _cache.Remove(key);

    public Task RemoveAsync(string key, CancellationToken token = default) => _cache.RemoveAsync(key, token);
}
