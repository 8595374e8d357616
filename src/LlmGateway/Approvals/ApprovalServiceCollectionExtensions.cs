using LlmGateway.Approvals;
using LlmGateway.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers human approval of tool calls (Gateway:Approvals).</summary>
public static class ApprovalServiceCollectionExtensions
{
    /// <summary>
    /// The in-memory approval store is the default; when Gateway:Redis is set at start-up the Redis store replaces it,
    /// so an approval given on any replica releases the call held on another.
    /// </summary>
    public static IServiceCollection AddGatewayApprovals(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton<IApprovalStore>(sp =>
        {
            var options = sp.GetRequiredService<GatewayConfigProvider>().Current.Options;
            return string.IsNullOrWhiteSpace(options.Redis)
                ? new InMemoryApprovalStore(sp.GetRequiredService<TimeProvider>())
                : new RedisApprovalStore(sp.GetRequiredService<LlmGateway.Redis.RedisConnection>(), options.Store.KeyPrefix, options.Store.Timeout,
                    sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<RedisApprovalStore>>());
        });
        services.TryAddSingleton<ApprovalMetrics>();
        services.TryAddSingleton<ApprovalWebhook>();
        services.TryAddSingleton<ApprovalDecisions>();
        services.TryAddSingleton<ApprovalGate>();
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<ApprovalWebhook>());
        services.AddHostedService<ApprovalMonitor>();
        return services;
    }
}
