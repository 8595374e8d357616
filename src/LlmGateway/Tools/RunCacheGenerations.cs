using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Tools;

/// <summary>
/// Which writes a run has made to a tool, as a number that every write increments: a run-cache entry is good only while
/// the number it was stored under is still current. In one process clearing the cache suffices; with
/// Gateway:Redis it lives in Redis (one hash per run, <c>{prefix}{rc:&lt;run&gt;}</c>, a field per tool), so a write
/// forwarded by one replica invalidates what another replica keeps for the run.
/// </summary>
internal interface IRunCacheGenerations
{
    /// <summary>The current number of (run, tool); null when it cannot be read now (then nothing is served or kept).</summary>
    ValueTask<long?> CurrentAsync(string run, string tool, CancellationToken cancellationToken);

    /// <summary>A write of the run to the tool: entries stored under an older number are stale.</summary>
    ValueTask AdvanceAsync(string run, string tool, CancellationToken cancellationToken);
}

/// <summary>One process: the cache itself forgets a run's entries on its writes (<see cref="ToolRunCache.Clear"/>), so one number serves.</summary>
internal sealed class LocalRunCacheGenerations : IRunCacheGenerations
{
    public ValueTask<long?> CurrentAsync(string run, string tool, CancellationToken cancellationToken) => ValueTask.FromResult<long?>(0);

    public ValueTask AdvanceAsync(string run, string tool, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}

/// <summary>The numbers in Redis, shared by the replicas; they expire with the run's idle time.</summary>
internal sealed class RedisRunCacheGenerations(RedisConnection redis, string keyPrefix, TimeSpan timeout, TimeSpan idleExpiry) : IRunCacheGenerations
{
    // KEYS: 1 the run's hash. ARGV: 1 tool, 2 idle expiry ms.
    private static readonly RedisScript Advance = new("run-cache-advance", """
        redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return 1
        """);

    public async ValueTask<long?> CurrentAsync(string run, string tool, CancellationToken cancellationToken)
    {
        Task<RedisValue>? call = null;
        try
        {
            var database = await redis.DatabaseAsync().ConfigureAwait(false);
            call = database.HashGetAsync(Key(run), tool);
            var value = await call.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            return value.IsNull ? 0 : (long)value;
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            if (call is not null)
            {
                RedisConnection.Observe(call);
            }

            return null;
        }
    }

    /// <remarks>
    /// One script (increment and expiry), so with <c>Store:WaitForReplicas</c> the bump is confirmed by the replicas like
    /// every other script: a fail-over cannot lose it and let a replica serve a read cached before the write.
    /// </remarks>
    public async ValueTask AdvanceAsync(string run, string tool, CancellationToken cancellationToken)
    {
        var call = redis.EvaluateAsync(Advance, [Key(run)], [tool, (long)idleExpiry.TotalMilliseconds]);
        try
        {
            await call.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            RedisConnection.Observe(call);
            throw new RunCacheUnavailableException($"Redis did not record a write of run '{run}' to tool '{tool}' within {timeout.TotalMilliseconds:0} ms: {exception.Message}", exception);
        }
    }

    private RedisKey Key(string run) => keyPrefix + "{rc:" + run + "}";
}

/// <summary>A write could not be recorded for the run cache; the write is refused rather than risk a stale read after it.</summary>
internal sealed class RunCacheUnavailableException(string message, Exception innerException) : Exception(message, innerException);
