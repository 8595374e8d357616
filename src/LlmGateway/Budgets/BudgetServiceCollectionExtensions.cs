using LlmGateway.Budgets;
using LlmGateway.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the admission store and the budget guard.</summary>
public static class BudgetServiceCollectionExtensions
{
    /// <summary>
    /// The in-memory store is the default; when Gateway:Redis is set at start-up the Redis store replaces it, so
    /// every replica on that Redis enforces one limit. (Changing Gateway:Redis needs a restart; limits reload live.)
    /// </summary>
    public static IServiceCollection AddGatewayBudgets(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton<IAdmissionStore>(sp =>
        {
            var options = sp.GetRequiredService<GatewayConfigProvider>().Current.Options;
            var storeOptions = new AdmissionStoreOptions
            {
                KeyPrefix = options.Store.KeyPrefix,
                OperationTimeout = options.Store.Timeout,
                RunIdleExpiry = options.Runs.IdleExpiry,
                MaxRuns = options.Store.MaxRuns,
            };
            var time = sp.GetRequiredService<TimeProvider>();
            if (string.IsNullOrWhiteSpace(options.Redis))
            {
                return new InMemoryAdmissionStore(storeOptions, time);
            }

            var redis = sp.GetRequiredService<LlmGateway.Redis.RedisConnection>();
            var perCall = new RedisAdmissionStore(redis, storeOptions, time, logger: sp.GetService<Microsoft.Extensions.Logging.ILogger<RedisAdmissionStore>>());
            return options.Store.Leases
                ? new LlmGateway.Budgets.Leases.LeasedAdmissionStore(redis, perCall, storeOptions, new LlmGateway.Budgets.Leases.LeaseOptions { RunClaimAfter = options.Store.LeaseRunClaimAfter }, time, ownsInner: true,
                    logger: sp.GetService<Microsoft.Extensions.Logging.ILogger<LlmGateway.Budgets.Leases.LeasedAdmissionStore>>(),
                    metrics: sp.GetService<LlmGateway.Telemetry.GatewayMetrics>())
                : perCall;
        });
        services.TryAddSingleton<BudgetGuard>();
        services.AddHostedService<AdmissionStoreWarmup>();
        return services;
    }
}
