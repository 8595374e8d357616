using LlmGateway.Telemetry;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the Prometheus scrape endpoint.</summary>
public static class TelemetryEndpointRouteBuilderExtensions
{
    public static IEndpointConventionBuilder MapGatewayMetrics(this IEndpointRouteBuilder endpoints, string pattern = "/metrics")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentException.ThrowIfNullOrEmpty(pattern);

        var collector = endpoints.ServiceProvider.GetRequiredService<PrometheusMetricsCollector>();
        RequestDelegate handler = context => PrometheusEndpoint.WriteAsync(context, collector);
        return endpoints.MapGet(pattern, handler).WithDisplayName("Prometheus metrics");
    }
}
