using LlmGateway.Configuration;
using LlmGateway.Forwarding;
using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the gateway's services; every piece is added with TryAdd so it can be replaced.</summary>
public static class GatewayServiceCollectionExtensions
{
    /// <summary>Adds the gateway, reading its policy from <paramref name="configPath"/> (polled for changes).</summary>
    public static IServiceCollection AddLlmGateway(this IServiceCollection services, string configPath, TimeSpan? configPollInterval = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(configPath);

        services.AddHttpForwarder();
        services.AddGatewayTelemetry();
        services.AddGatewayBudgets();
        services.AddGatewayTools();
        services.AddGatewayApprovals();
        services.AddGatewayCache();
        services.AddGatewayRuns();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(new GatewayConfigFile(Path.GetFullPath(configPath), configPollInterval ?? TimeSpan.FromSeconds(1)));
        services.TryAddSingleton<GatewayConfigProvider>();
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<GatewayConfigProvider>());
        services.AddHostedService<LlmGateway.Telemetry.OtlpMetricsExport>();
        services.AddGatewayTracing();
        services.AddOptions<PrometheusMetricsOptions>().Configure<GatewayConfigProvider>(static (meters, config) =>
        {
            if (!config.Current.Options.Metrics.FrameworkMeters)
            {
                // Per-request framework histograms: the gateway's own metrics cover them (Gateway:Metrics:FrameworkMeters).
                meters.MeterNames.Remove(PrometheusMetricsOptions.HostingMeter);
                meters.MeterNames.Remove(PrometheusMetricsOptions.HttpClientMeter);
            }
        });
        services.TryAddSingleton<UpstreamHttpClient>();

        // One multiplexer for every Redis-backed store; created only when a store needs it (Gateway:Redis set).
        services.TryAddSingleton(sp =>
        {
            var options = sp.GetRequiredService<GatewayConfigProvider>().Current.Options;
            return new LlmGateway.Redis.RedisConnection(options.Redis!, TimeSpan.FromSeconds(1), options.Store.TlsCaFile, options.Store.WaitForReplicas, options.Store.Timeout / 2);
        });
        services.AddLlmGatewayDeployments();
        services.TryAddSingleton<LlmGateway.Resilience.UpstreamResilience>();
        services.TryAddSingleton<SseRelay>();
        services.TryAddSingleton<LlmForwardingTransformer>();
        services.TryAddSingleton<LlmCallRecorder>();
        services.TryAddSingleton<LlmProxyHandler>();
        services.TryAddSingleton<ModelsEndpoint>();
        services.AddMockLlm();
        return services;
    }
}
