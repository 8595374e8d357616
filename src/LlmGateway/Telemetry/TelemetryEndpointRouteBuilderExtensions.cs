using LlmGateway.Telemetry;
using Prometheus;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the Prometheus scrape endpoint.</summary>
public static class TelemetryEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Serves the gateway's registry with prometheus-net: the text format 0.0.4, or OpenMetrics 1.0.0 for a scraper
    /// that asks for it (<c>Accept: application/openmetrics-text</c>, as Prometheus does by default).
    /// </summary>
    public static IEndpointConventionBuilder MapGatewayMetrics(this IEndpointRouteBuilder endpoints, string pattern = "/metrics")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentException.ThrowIfNullOrEmpty(pattern);

        var registry = endpoints.ServiceProvider.GetRequiredService<MeterBridge>().Registry;
        return endpoints.MapMetrics(settings =>
        {
            settings.Registry = registry;
            settings.EnableOpenMetrics = true;
        }, pattern);
    }
}
