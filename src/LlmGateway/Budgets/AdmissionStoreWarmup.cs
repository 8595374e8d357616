using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Budgets;

/// <summary>
/// Connects the admission store at start-up and loads its Lua scripts on every Redis primary, so the first calls pay
/// for neither the connection nor a script load (and do not time out on them). Never fails start-up: a gateway whose Redis is down starts, reports not ready on /readyz,
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

        if (store is Leases.LeasedAdmissionStore leased)
        {
            try
            {
                await leased.WarmUpAsync().WaitAsync(MaxWait, cancellationToken);
            }
            catch (Exception exception) when (LlmGateway.Redis.RedisConnection.IsUnavailable(exception))
            {
                ScriptsNotLoaded(logger, exception.Message);
            }
        }
        else if (store is RedisAdmissionStore redis)
        {
            // The scripts go to every primary now, before the host starts serving (and /readyz says ready): the first
            // calls then run by SHA, not behind a NOSCRIPT and the script's source.
            try
            {
                await redis.LoadScriptsAsync().WaitAsync(MaxWait, cancellationToken);
            }
            catch (Exception exception) when (LlmGateway.Redis.RedisConnection.IsUnavailable(exception))
            {
                ScriptsNotLoaded(logger, exception.Message);
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = GatewayEventIds.StoreUnavailable + 4, EventName = "StoreScriptsNotLoaded", Level = LogLevel.Warning, Message = "The budget store's scripts could not be loaded at start-up ({Reason}); each is sent with its first call instead")]
    private static partial void ScriptsNotLoaded(ILogger logger, string reason);

    [LoggerMessage(EventId = GatewayEventIds.StoreUnavailable + 2, EventName = "StoreNotReadyAtStart", Level = LogLevel.Warning, Message = "The budget store did not answer within {Seconds} s of start-up; /readyz reports it until it does")]
    private static partial void NotReady(ILogger logger, double seconds);
}
