using System.Diagnostics;
using LlmGateway.Configuration;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Trace;

namespace LlmGateway.Tracing;

/// <summary>
/// Exports the gateway's spans to an OpenTelemetry collector over OTLP (HTTP/protobuf) when Gateway:Tracing:OtlpEndpoint
/// is set at start-up, sampled by <see cref="RunRootSampler"/>. Off by default: no tracer provider, so nothing listens to
/// the "LlmGateway" source and no span is ever built. Span processors registered in the container (a test's in-memory
/// exporter) are added too, and turn tracing on by themselves.
/// </summary>
internal sealed class OtlpTraceExport(GatewayConfigProvider config, IEnumerable<BaseProcessor<Activity>> processors) : IHostedService, IDisposable
{
    private TracerProvider? _provider;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var options = config.Current.Options.Tracing;
        var extra = processors.ToList();
        var endpoint = string.IsNullOrWhiteSpace(options.OtlpEndpoint) ? null : options.OtlpEndpoint;
        if (endpoint is null && extra.Count == 0)
        {
            return Task.CompletedTask;
        }

        var builder = Sdk.CreateTracerProviderBuilder()
            .AddSource(GatewayTracing.SourceName)
            .SetSampler(new RunRootSampler(options.Sampler));
        if (endpoint is not null)
        {
            builder.AddOtlpExporter(exporter =>
            {
                exporter.Endpoint = new Uri(endpoint);
                exporter.Protocol = OtlpExportProtocol.HttpProtobuf;
                if (options.OtlpHeaders.Count > 0)
                {
                    exporter.Headers = string.Join(",", options.OtlpHeaders.Select(h => $"{h.Key}={h.Value}"));
                }
            });
        }

        foreach (var processor in extra)
        {
            builder.AddProcessor(processor);
        }

        _provider = builder.Build();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _provider?.ForceFlush(2000);
        return Task.CompletedTask;
    }

    public void Dispose() => _provider?.Dispose();
}
