namespace LlmGateway.Telemetry;

/// <summary>
/// Creates the collector when the host starts rather than at the first scrape, so measurements taken
/// before anyone scrapes /metrics are counted.
/// </summary>
internal sealed class PrometheusCollectorStartup(PrometheusMetricsCollector collector) : IHostedService
{
    // Holding the reference documents the purpose: resolving this service resolves the collector.
    public PrometheusMetricsCollector Collector { get; } = collector;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
