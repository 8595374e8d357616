using System.Security.Cryptography;

namespace LlmGateway.Tools;

/// <summary>The idempotency store of a single gateway process; same semantics as <see cref="RedisIdempotencyStore"/>.</summary>
/// <remarks>
/// Bounded by entries and bytes (Gateway:Idempotency:MaxEntries, MaxBytes). Nothing live is ever evicted: an entry
/// evicted before its TTL would let a repeat of its call run the tool a second time (a refund paid twice). When full,
/// expired entries are swept first; if there is still no room, a new key is refused with
/// <see cref="IdempotencyStoreFullException"/> (the caller gets a retryable 503 <c>store_full</c>, the tool is not
/// called) while every key already held keeps being answered. A response that does not fit the bytes left is kept
/// without its body (repeats get its status and headers, as for a body over MaxStoredResponseBytes), so a completed
/// call always stays deduplicated.
/// </remarks>
public sealed class InMemoryIdempotencyStore : IIdempotencyStore
{
    /// <summary>What one entry costs beyond its strings and body: the map entry, the record, the token.</summary>
    internal const int EntryOverhead = 256;

    private static readonly TimeSpan SweepInterval = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan FullSweepInterval = TimeSpan.FromSeconds(1);
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly int _maxEntries;
    private readonly long _maxBytes;
    private DateTimeOffset _nextSweep;
    private DateTimeOffset _nextFullSweep;
    private long _bytes;

    public InMemoryIdempotencyStore(TimeProvider timeProvider, int maxEntries = 100_000, long maxBytes = 256L * 1024 * 1024)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxEntries);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBytes);
        _time = timeProvider;
        _maxEntries = maxEntries;
        _maxBytes = maxBytes;
        _nextSweep = timeProvider.GetUtcNow() + SweepInterval;
    }

    /// <summary>Entries held now, expired ones not yet swept included.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Bytes the entries are counted as (keys, hashes, stored responses, plus <see cref="EntryOverhead"/> each).</summary>
    public long Bytes
    {
        get
        {
            lock (_lock)
            {
                return _bytes;
            }
        }
    }

    public ValueTask<IdempotencyClaim> TryBeginAsync(string key, string requestHash, TimeSpan claimTtl, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(requestHash);
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            Sweep(now, force: false);
            var exists = _entries.TryGetValue(key, out var entry);
            if (exists && entry!.ExpiresAt > now)
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
            var claimed = new Entry(requestHash, token, null, now + claimTtl, SizeOf(key, requestHash, null));
            var freed = exists ? entry!.Size : 0;
            if (!Fits(claimed.Size - freed, exists ? 0 : 1))
            {
                Sweep(now, force: true);
                exists = _entries.TryGetValue(key, out entry);
                freed = exists ? entry!.Size : 0;
                if (!Fits(claimed.Size - freed, exists ? 0 : 1))
                {
                    throw new IdempotencyStoreFullException(
                        $"The gateway's idempotency store is full ({_entries.Count} of {_maxEntries} entries, {_bytes} of {_maxBytes} bytes; Gateway:Idempotency:MaxEntries/MaxBytes) and none of its entries has expired yet.");
                }
            }

            _bytes += claimed.Size - freed;
            _entries[key] = claimed;
            return ValueTask.FromResult(new IdempotencyClaim(IdempotencyState.Claimed, requestHash, token));
        }
    }

    public ValueTask CompleteAsync(string key, IdempotencyClaim claim, StoredToolResponse response, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        ArgumentNullException.ThrowIfNull(response);
        lock (_lock)
        {
            if (IsHeld(key, claim, out var held))
            {
                var size = SizeOf(key, claim.RequestHash, response);
                if (_bytes - held.Size + size > _maxBytes)
                {
                    // No room for all of it: keep what deduplicates the call (its status) and drop the rest.
                    response = new StoredToolResponse(response.Status, HeadersWithin(response.Headers, _maxBytes - (_bytes - held.Size) - SizeOf(key, claim.RequestHash, null)), null);
                    size = SizeOf(key, claim.RequestHash, response);
                }

                _bytes += size - held.Size;
                _entries[key] = new Entry(claim.RequestHash, null, response, _time.GetUtcNow() + ttl, size);
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask AbandonAsync(string key, IdempotencyClaim claim, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        lock (_lock)
        {
            if (IsHeld(key, claim, out var held))
            {
                _entries.Remove(key);
                _bytes -= held.Size;
            }
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>The bytes an entry is counted as: UTF-16 strings, the body, and <see cref="EntryOverhead"/>.</summary>
    internal static long SizeOf(string key, string hash, StoredToolResponse? response)
    {
        long size = EntryOverhead + 2L * (key.Length + hash.Length);
        if (response is not null)
        {
            size += response.Body?.Length ?? 0;
            foreach (var (name, values) in response.Headers)
            {
                size += HeaderSize(name, values);
            }
        }

        return size;
    }

    private static long HeaderSize(string name, string[] values)
    {
        long size = 2L * name.Length + 32;
        foreach (var value in values)
        {
            size += 2L * value.Length + 8;
        }

        return size;
    }

    private static List<KeyValuePair<string, string[]>> HeadersWithin(IReadOnlyList<KeyValuePair<string, string[]>> headers, long room)
    {
        var kept = new List<KeyValuePair<string, string[]>>();
        foreach (var (name, values) in headers)
        {
            var size = HeaderSize(name, values);
            if (size <= room)
            {
                kept.Add(new(name, values));
                room -= size;
            }
        }

        return kept;
    }

    private bool Fits(long addedBytes, int addedEntries) =>
        _entries.Count + addedEntries <= _maxEntries && _bytes + addedBytes <= _maxBytes;

    private bool IsHeld(string key, IdempotencyClaim claim, out Entry held)
    {
        if (claim.Token is not null && _entries.TryGetValue(key, out var entry) && entry.Token == claim.Token && entry.ExpiresAt > _time.GetUtcNow())
        {
            held = entry;
            return true;
        }

        held = null!;
        return false;
    }

    /// <summary>Forgets expired entries: every minute, and when full at most once a second (a full store refusing a flood of new keys does not scan on every one).</summary>
    private void Sweep(DateTimeOffset now, bool force)
    {
        if (force ? now < _nextFullSweep : now < _nextSweep)
        {
            return;
        }

        _nextSweep = now + SweepInterval;
        _nextFullSweep = now + FullSweepInterval;
        foreach (var (key, entry) in _entries)
        {
            if (entry.ExpiresAt <= now)
            {
                _entries.Remove(key);
                _bytes -= entry.Size;
            }
        }
    }

    private sealed record Entry(string Hash, string? Token, StoredToolResponse? Response, DateTimeOffset ExpiresAt, long Size);
}

/// <summary>
/// The in-memory idempotency store has no room for a new key (Gateway:Idempotency:MaxEntries/MaxBytes). The call is
/// refused rather than run without idempotency, whatever Gateway:Store:OnUnavailable says: a repeat must never run twice.
/// </summary>
public sealed class IdempotencyStoreFullException : Exception
{
    public IdempotencyStoreFullException()
        : this("The idempotency store is full.")
    {
    }

    public IdempotencyStoreFullException(string message)
        : base(message)
    {
    }

    public IdempotencyStoreFullException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
