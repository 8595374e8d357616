using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Budgets;

/// <summary>
/// Connects the admission store at start-up, so the first calls do not pay for the Redis connection (and
/// time out on it). Never fails start-up: a gateway whose Redis is down starts, reports not ready on /readyz,
/// applies its store policy, and connects when Redis comes.
/// </summary>
internal sealed partial class AdmissionStoreWarmup(IAdmissionStore store, ILogger<AdmissionStoreWarmup> logger) : IHostedService
{
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(5);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + MaxWait;
        while (!await store.PingAsync(cancellationToken))
        {
            if (DateTime.UtcNow > deadline || cancellationToken.IsCancellationRequested)
            {
                NotReady(logger, MaxWait.TotalSeconds);
                return;
            }

            await Task.Delay(100, cancellationToken);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = GatewayEventIds.StoreUnavailable + 2, EventName = "StoreNotReadyAtStart", Level = LogLevel.Warning, Message = "The budget store did not answer within {Seconds} s of start-up; /readyz reports it until it does")]
    private static partial void NotReady(ILogger logger, double seconds);
}
