using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Caching;

/// <summary>
/// The cache's and the recording store's view of the gateway's shared <see cref="RedisConnection"/>: every call
/// bounded by the store timeout in real time, so no request waits on Redis longer than that. Failures surface as
/// exceptions; callers treat them as a miss.
/// </summary>
internal sealed class CacheRedisConnection(RedisConnection redis, TimeSpan timeout)
{
    public async Task<IDatabase> DatabaseAsync(CancellationToken cancellationToken) =>
        await BoundAsync(redis.DatabaseAsync(), cancellationToken).ConfigureAwait(false);

    /// <summary>Waits for a Redis call at most the store timeout; an abandoned call is observed so it never surfaces later.</summary>
    public async Task<T> BoundAsync<T>(Task<T> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            RedisConnection.Observe(call);
            throw;
        }
    }
}
