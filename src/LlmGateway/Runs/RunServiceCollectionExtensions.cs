using LlmGateway.Configuration;
using LlmGateway.Runs;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers run outcomes, the run ledger (per-run calls and totals) and the idle sweep.</summary>
public static class RunServiceCollectionExtensions
{
    /// <summary>The in-memory ledger is the default; when Gateway:Redis is set at start-up the Redis ledger replaces it.</summary>
    public static IServiceCollection AddGatewayRuns(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton<IRunLedger>(sp =>
        {
            var options = sp.GetRequiredService<GatewayConfigProvider>().Current.Options;
            var time = sp.GetRequiredService<TimeProvider>();
            return string.IsNullOrWhiteSpace(options.Redis)
                ? new InMemoryRunLedger(options.Runs.IdleExpiry, options.Store.MaxRuns, time)
                : new RedisRunLedger(sp.GetRequiredService<LlmGateway.Redis.RedisConnection>(), options.Store.KeyPrefix, options.Runs.IdleExpiry,
                    TimeSpan.FromTicks(Math.Max(options.Store.Timeout.Ticks, TimeSpan.TicksPerSecond)), time,
                    sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<RedisRunLedger>>(),
                    onDropped: sp.GetRequiredService<LlmGateway.Telemetry.GatewayMetrics>().Runs.RecordsDropped);
        });
        services.TryAddSingleton<RunOutcomes>();
        services.AddHostedService<RunSweeper>();
        services.AddHostedService<RunLedgerStopFlush>();
        return services;
    }
}
