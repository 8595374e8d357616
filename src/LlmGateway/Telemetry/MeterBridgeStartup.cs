namespace LlmGateway.Telemetry;

/// <summary>
/// Creates the bridge when the host starts rather than at the first scrape, so measurements taken before anyone
/// scrapes /metrics are counted.
/// </summary>
internal sealed class MeterBridgeStartup(MeterBridge bridge) : IHostedService
{
    // Holding the reference documents the purpose: resolving this service resolves the bridge.
    public MeterBridge Bridge { get; } = bridge;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
