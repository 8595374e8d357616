namespace LlmGateway.Budgets;

/// <summary>An admitted call's hold on its budgets, in-flight slots and rate limits; settle or release it exactly once.</summary>
/// <remarks>Opaque: each store subclasses it with what it needs to find the scopes again without another lookup.</remarks>
public abstract class Reservation
{
    private int _completed;

    private protected Reservation(string id, long usdNanos, long tokens, long expiresAtMs)
    {
        Id = id;
        UsdNanos = usdNanos;
        ReservedTokens = tokens;
        ExpiresAtMs = expiresAtMs;
    }

    /// <summary>Unique across replicas; for logs.</summary>
    public string Id { get; }

    /// <summary>The worst-case cost held (rounded up to the store's nano-dollar unit).</summary>
    public decimal ReservedUsd => UsdAmount.ToUsd(UsdNanos);

    /// <summary>The worst-case tokens held.</summary>
    public long ReservedTokens { get; }

    /// <summary>After this instant the store gives the reservation back by itself.</summary>
    public DateTimeOffset ExpiresAt => DateTimeOffset.FromUnixTimeMilliseconds(ExpiresAtMs);

    internal long UsdNanos { get; }

    internal long ExpiresAtMs { get; }

    /// <summary>First settle/release wins; the rest are no-ops.</summary>
    internal bool TryComplete() => Interlocked.Exchange(ref _completed, 1) == 0;
}
