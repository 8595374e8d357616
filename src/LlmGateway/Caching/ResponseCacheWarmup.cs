using Microsoft.Extensions.Hosting;

namespace LlmGateway.Caching;

/// <summary>
/// Makes one lookup in the shared tier at start-up, so the first cached call does not pay for its first use (the
/// RedisCache connects and prepares itself then) and time out on it. Never fails start-up, and holds it up at most
/// 2 s (only when the shared tier does not answer: the calls then treat it as a miss until it does).
/// </summary>
internal sealed class ResponseCacheWarmup(ResponseCacheStore store) : IHostedService
{
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(2);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (store.Shared is not { } shared)
        {
            return;
        }

        try
        {
            // Not a cache key (those are SHA-256 hex): nothing is found, and the path is ready.
            using var deadline = new StoreDeadline(MaxWait, cancellationToken);
            await deadline.WaitAsync(shared.GetAsync("warmup", deadline.Token)).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // The calls log the shared tier's failures as they meet them (CacheStoreFailed).
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
