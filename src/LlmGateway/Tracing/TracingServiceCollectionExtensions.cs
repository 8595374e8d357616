using LlmGateway.Tracing;
using Microsoft.Extensions.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the export of the gateway's spans (Gateway:Tracing).</summary>
public static class TracingServiceCollectionExtensions
{
    public static IServiceCollection AddGatewayTracing(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddHostedService<OtlpTraceExport>();
        return services;
    }
}
