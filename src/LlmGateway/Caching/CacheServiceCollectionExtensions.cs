using LlmGateway.Caching;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Replay;
using LlmGateway.Telemetry;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the response cache and the run recordings.</summary>
public static class CacheServiceCollectionExtensions
{
    /// <summary>
    /// The response cache keeps answers in a bounded memory tier (Gateway:Cache:MemoryMaxBytes) in front of the
    /// <see cref="IDistributedCache"/> the container resolves. That is, unless the application registered its own,
    /// a RedisCache on the gateway's multiplexer when Gateway:Redis is set at start-up (every replica on that Redis
    /// shares it, under Gateway:Store:KeyPrefix + "cache:"); without Redis, a MemoryDistributedCache, which the
    /// response cache does not use as a tier (it would only hold a second copy in this process). Recordings are in
    /// memory (bounded; its size is the llm_gateway_recordings_* gauges), or in Redis when Gateway:Redis is set.
    /// </summary>
    public static IServiceCollection AddGatewayCache(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton<IDistributedCache>(static sp => (IDistributedCache?)RedisCacheOrNull(sp)
            ?? new MemoryDistributedCache(Options.Options.Create(new MemoryDistributedCacheOptions())));
        services.TryAddSingleton(static sp =>
        {
            var config = sp.GetRequiredService<GatewayConfigProvider>();
            var timeProvider = sp.GetRequiredService<TimeProvider>();
            // An AddDistributedMemoryCache() of the application's own is not a shared tier either: with
            // Gateway:Redis set the cache still shares answers through Redis.
            var shared = sp.GetRequiredService<IDistributedCache>();
            if (shared is MemoryDistributedCache)
            {
                shared = RedisCacheOrNull(sp);
            }

            var memory = new MemoryCacheTier(() => config.Current.Options.Cache.MemoryMaxBytes, timeProvider);
            return new ResponseCacheStore(memory, shared, config.Current.Options.Store.Timeout, timeProvider, sp.GetRequiredService<ILogger<ResponseCacheStore>>());
        });
        services.TryAddSingleton<IRecordingStore>(static sp =>
        {
            var config = sp.GetRequiredService<GatewayConfigProvider>();
            var options = config.Current.Options;
            var timeProvider = sp.GetRequiredService<TimeProvider>();
            if (!string.IsNullOrWhiteSpace(options.Redis))
            {
                return new RedisRecordingStore(sp.GetRequiredService<RedisConnection>(), () => config.Current.Options.Cache, options.Store.KeyPrefix, options.Store.Timeout, timeProvider);
            }

            var memory = new InMemoryRecordingStore(() => config.Current.Options.Cache, timeProvider);
            sp.GetRequiredService<GatewayMetrics>().ObserveRecordings(memory.Size);
            return memory;
        });
        services.TryAddSingleton<ResponseCache>();
        services.AddHostedService<ResponseCacheWarmup>();
        return services;
    }

    private static GatewayRedisCache? RedisCacheOrNull(IServiceProvider services)
    {
        var options = services.GetRequiredService<GatewayConfigProvider>().Current.Options;
        return string.IsNullOrWhiteSpace(options.Redis)
            ? null
            : new GatewayRedisCache(services.GetRequiredService<RedisConnection>(), options.Store.KeyPrefix);
    }
}
