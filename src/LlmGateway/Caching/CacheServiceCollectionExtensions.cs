using LlmGateway.Caching;
using LlmGateway.Configuration;
using LlmGateway.Replay;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the response cache and the run recordings.</summary>
public static class CacheServiceCollectionExtensions
{
    /// <summary>
    /// The in-memory stores are the default; when Gateway:Redis is set at start-up the Redis stores replace them, so
    /// every replica on that Redis shares one cache and one set of recordings (under Gateway:Store:KeyPrefix).
    /// </summary>
    public static IServiceCollection AddGatewayCache(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        // Resolved only when Gateway:Redis is set: the cache and recording stores on the gateway's one multiplexer.
        services.TryAddSingleton(sp => new CacheRedisConnection(
            sp.GetRequiredService<LlmGateway.Redis.RedisConnection>(),
            sp.GetRequiredService<GatewayConfigProvider>().Current.Options.Store.Timeout));
        services.TryAddSingleton<IResponseCacheStore>(sp =>
        {
            var config = sp.GetRequiredService<GatewayConfigProvider>();
            var options = config.Current.Options;
            return string.IsNullOrWhiteSpace(options.Redis)
                ? new InMemoryResponseCacheStore(() => config.Current.Options.Cache.MemoryMaxBytes, sp.GetRequiredService<TimeProvider>())
                : new RedisResponseCacheStore(sp.GetRequiredService<CacheRedisConnection>(), options.Store.KeyPrefix);
        });
        services.TryAddSingleton<IRecordingStore>(sp =>
        {
            var options = sp.GetRequiredService<GatewayConfigProvider>().Current.Options;
            return string.IsNullOrWhiteSpace(options.Redis)
                ? new InMemoryRecordingStore(sp.GetRequiredService<TimeProvider>())
                : new RedisRecordingStore(sp.GetRequiredService<CacheRedisConnection>(), options.Store.KeyPrefix, sp.GetRequiredService<TimeProvider>());
        });
        services.TryAddSingleton<ResponseCache>();
        return services;
    }
}
