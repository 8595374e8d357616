using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Caching;

/// <summary>
/// Where cached answers live: a bounded <see cref="MemoryCacheTier"/> in this process in front of an optional shared
/// tier, an <see cref="IDistributedCache"/> (the gateway's RedisCache when Gateway:Redis is set, or the operator's
/// own). A hit in memory costs no round trip; a miss there reads the shared tier and keeps what it finds in memory
/// until the answer's own expiry. A store writes both tiers with the same absolute expiry.
/// </summary>
/// <remarks>
/// The shared tier holds bytes that crossed a network: each value carries its length and SHA-256
/// (<see cref="CachedAnswerSerializer"/>), and one that does not check out is a miss, logged and removed. Every
/// shared-tier call is bounded by Gateway:Store:Timeout; one that fails or times out is a miss (lookup) or skipped
/// (store), logged, and never fails the call.
/// </remarks>
internal sealed class ResponseCacheStore
{
    private readonly IDistributedCache? _shared;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;

    /// <param name="shared">The shared tier; null keeps answers in this process only.</param>
    /// <param name="timeout">The longest any shared-tier call may take (Gateway:Store:Timeout).</param>
    public ResponseCacheStore(MemoryCacheTier memory, IDistributedCache? shared, TimeSpan timeout, TimeProvider timeProvider, ILogger<ResponseCacheStore> logger)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(logger);
        Memory = memory;
        _shared = shared;
        _timeout = timeout;
        _timeProvider = timeProvider;
        _logger = logger;
    }

    public MemoryCacheTier Memory { get; }

    /// <summary>The shared tier, or null when answers stay in this process.</summary>
    public IDistributedCache? Shared => _shared;

    /// <summary>An intact answer that has not expired, or null (a miss).</summary>
    public ValueTask<CachedAnswer?> GetAsync(string key, CancellationToken cancellationToken)
    {
        var answer = Memory.Get(key);
        return answer is not null || _shared is null ? ValueTask.FromResult(answer) : GetSharedAsync(_shared, key, cancellationToken);
    }

    /// <summary>Stores the answer in both tiers until its <see cref="CachedAnswer.ExpiresAt"/>; never throws.</summary>
    public async ValueTask SetAsync(string key, CachedAnswer answer)
    {
        Memory.Set(key, answer);
        var ttl = answer.ExpiresAt - _timeProvider.GetUtcNow();
        if (_shared is null || ttl <= TimeSpan.Zero)
        {
            return;
        }

        try
        {
            // Relative to now rather than absolute: the shared tier reads its own clock (RedisCache: the system
            // clock, and whole seconds rounded down, so Redis never keeps an entry past the gateway's expiry).
            var options = new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = ttl };
            var value = CachedAnswerSerializer.Serialize(answer);
            using var deadline = new StoreDeadline(_timeout, CancellationToken.None);
            await deadline.WaitAsync(_shared.SetAsync(key, value, options, deadline.Token)).ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            CacheLog.StoreFailed(_logger, key, "store", exception.Message);
        }
    }

    private async ValueTask<CachedAnswer?> GetSharedAsync(IDistributedCache shared, string key, CancellationToken cancellationToken)
    {
        byte[]? value;
        try
        {
            using var deadline = new StoreDeadline(_timeout, cancellationToken);
            value = await deadline.WaitAsync(shared.GetAsync(key, deadline.Token)).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            CacheLog.StoreFailed(_logger, key, "lookup", exception.Message);
            return null;
        }

        if (value is null)
        {
            return null;
        }

        var answer = CachedAnswerSerializer.Deserialize(value);
        if (answer is null)
        {
            // Truncated or corrupted: never served; removed so it cannot linger if this call does not replace it.
            CacheLog.EntryCorrupt(_logger, key, value.Length);
            try
            {
                using var deadline = new StoreDeadline(_timeout, CancellationToken.None);
                await deadline.WaitAsync(shared.RemoveAsync(key, deadline.Token)).ConfigureAwait(false);
            }
            catch (Exception exception)
            {
                CacheLog.StoreFailed(_logger, key, "remove", exception.Message);
            }

            return null;
        }

        if (answer.ExpiresAt <= _timeProvider.GetUtcNow())
        {
            return null;
        }

        // Kept here until the expiry it was stored with, not for a fresh TTL.
        Memory.Set(key, answer);
        return answer;
    }
}
