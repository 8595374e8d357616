using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the gateway's metrics and the Prometheus collector behind /metrics.</summary>
public static class TelemetryServiceCollectionExtensions
{
    public static IServiceCollection AddGatewayTelemetry(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);

        services.AddOptions();
        services.AddMetrics();
        services.TryAddSingleton<GatewayMetrics>();
        services.TryAddSingleton(static sp => new PrometheusMetricsCollector(
            sp.GetRequiredService<IOptions<PrometheusMetricsOptions>>().Value,
            sp.GetRequiredService<IMeterFactory>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, PrometheusCollectorStartup>());
        return services;
    }
}
