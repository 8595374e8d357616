using System.Security.Cryptography;

namespace LlmGateway.Tools;

/// <summary>The idempotency store of a single gateway process; same semantics as <see cref="RedisIdempotencyStore"/>.</summary>
public sealed class InMemoryIdempotencyStore : IIdempotencyStore
{
    private static readonly TimeSpan SweepInterval = TimeSpan.FromMinutes(1);
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private DateTimeOffset _nextSweep;

    public InMemoryIdempotencyStore(TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        _time = timeProvider;
        _nextSweep = timeProvider.GetUtcNow() + SweepInterval;
    }

    public ValueTask<IdempotencyClaim> TryBeginAsync(string key, string requestHash, TimeSpan claimTtl, CancellationToken cancellationToken = default)
    {
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            Sweep(now);
            if (_entries.TryGetValue(key, out var entry) && entry.ExpiresAt > now)
            {
                if (!string.Equals(entry.Hash, requestHash, StringComparison.Ordinal))
                {
                    return ValueTask.FromResult(new IdempotencyClaim(IdempotencyState.KeyReused, requestHash));
                }

                return ValueTask.FromResult(entry.Response is null
                    ? new IdempotencyClaim(IdempotencyState.InFlight, requestHash)
                    : new IdempotencyClaim(IdempotencyState.Completed, requestHash, null, entry.Response));
            }

            var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
            _entries[key] = new Entry(requestHash, token, null, now + claimTtl);
            return ValueTask.FromResult(new IdempotencyClaim(IdempotencyState.Claimed, requestHash, token));
        }
    }

    public ValueTask CompleteAsync(string key, IdempotencyClaim claim, StoredToolResponse response, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        ArgumentNullException.ThrowIfNull(response);
        lock (_lock)
        {
            if (IsHeld(key, claim))
            {
                _entries[key] = new Entry(claim.RequestHash, null, response, _time.GetUtcNow() + ttl);
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask AbandonAsync(string key, IdempotencyClaim claim, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        lock (_lock)
        {
            if (IsHeld(key, claim))
            {
                _entries.Remove(key);
            }
        }

        return ValueTask.CompletedTask;
    }

    private bool IsHeld(string key, IdempotencyClaim claim) =>
        claim.Token is not null && _entries.TryGetValue(key, out var entry) && entry.Token == claim.Token && entry.ExpiresAt > _time.GetUtcNow();

    private void Sweep(DateTimeOffset now)
    {
        if (now < _nextSweep)
        {
            return;
        }

        _nextSweep = now + SweepInterval;
        foreach (var (key, entry) in _entries)
        {
            if (entry.ExpiresAt <= now)
            {
                _entries.Remove(key);
            }
        }
    }

    private sealed record Entry(string Hash, string? Token, StoredToolResponse? Response, DateTimeOffset ExpiresAt);
}
