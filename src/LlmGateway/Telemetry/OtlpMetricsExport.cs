using LlmGateway.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;

namespace LlmGateway.Telemetry;

/// <summary>
/// Pushes the same meters /metrics exposes to an OpenTelemetry collector over OTLP (HTTP/protobuf) when
/// Gateway:Otlp:Endpoint is set at start-up; off by default. The Prometheus endpoint keeps working beside it.
/// </summary>
internal sealed class OtlpMetricsExport(GatewayConfigProvider config, IOptions<PrometheusMetricsOptions> meters) : IHostedService, IDisposable
{
    private MeterProvider? _provider;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var options = config.Current.Options.Otlp;
        if (string.IsNullOrWhiteSpace(options.Endpoint))
        {
            return Task.CompletedTask;
        }

        var names = new List<string>(meters.Value.MeterNames);
        foreach (var prefix in meters.Value.MeterPrefixes)
        {
            names.Add(prefix + "*");
            names.Add(prefix);
        }

        var headers = string.Join(",", options.Headers.Select(h => $"{h.Key}={h.Value}"));
        _provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter([.. names])
            .AddOtlpExporter((exporter, reader) =>
            {
                exporter.Endpoint = new Uri(options.Endpoint);
                exporter.Protocol = OtlpExportProtocol.HttpProtobuf;
                if (headers.Length > 0)
                {
                    exporter.Headers = headers;
                }

                reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = (int)options.Interval.TotalMilliseconds;
                reader.TemporalityPreference = MetricReaderTemporalityPreference.Cumulative;
            })
            .Build();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _provider?.ForceFlush(2000);
        return Task.CompletedTask;
    }

    public void Dispose() => _provider?.Dispose();
}
