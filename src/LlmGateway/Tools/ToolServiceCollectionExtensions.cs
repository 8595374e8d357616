using LlmGateway.Configuration;
using LlmGateway.Tools;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the tool gateway (/tools/{tool}/...).</summary>
public static class ToolServiceCollectionExtensions
{
    /// <summary>
    /// The in-memory idempotency store is the default; when Gateway:Redis is set at start-up the Redis store replaces
    /// it, so every replica answers a repeated key from the same stored response.
    /// </summary>
    public static IServiceCollection AddGatewayTools(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton<IIdempotencyStore>(sp =>
        {
            var options = sp.GetRequiredService<GatewayConfigProvider>().Current.Options;
            return string.IsNullOrWhiteSpace(options.Redis)
                ? new InMemoryIdempotencyStore(sp.GetRequiredService<TimeProvider>(), options.Idempotency.MaxEntries, options.Idempotency.MaxBytes)
                : new RedisIdempotencyStore(sp.GetRequiredService<LlmGateway.Redis.RedisConnection>(), options.Store.KeyPrefix, options.Store.Timeout);
        });
        services.TryAddSingleton<ToolRegistry>();
        services.TryAddSingleton<ToolForwardingTransformer>();
        services.TryAddSingleton<ToolForwarder>();
        services.TryAddSingleton<ToolRunCache>();
        services.TryAddSingleton<ToolRunCacheMetrics>();
        services.TryAddSingleton<IRunCacheGenerations>(sp =>
        {
            var options = sp.GetRequiredService<GatewayConfigProvider>().Current.Options;
            return string.IsNullOrWhiteSpace(options.Redis)
                ? new LocalRunCacheGenerations()
                : new RedisRunCacheGenerations(sp.GetRequiredService<LlmGateway.Redis.RedisConnection>(), options.Store.KeyPrefix, options.Store.Timeout, options.Runs.IdleExpiry);
        });
        services.TryAddSingleton<ToolCallAdmission>();
        services.TryAddSingleton<IdempotentToolExecution>();
        services.TryAddSingleton<ToolCallHandler>();
        return services;
    }
}
