namespace LlmGateway.Budgets;

/// <summary>An admitted call's hold on its budgets, in-flight slots and rate limits; settle or release it exactly once.</summary>
/// <remarks>Opaque: each store subclasses it with what it needs to find the scopes again without another lookup.</remarks>
public abstract class Reservation
{
    private int _completed;
    private string? _id;

    private protected Reservation(string id, long usdNanos, long tokens, long expiresAtMs)
        : this(usdNanos, tokens, expiresAtMs)
    {
        _id = id;
    }

    /// <summary>For a store whose ids are only formatted when asked for (<see cref="FormatId"/>): most never are.</summary>
    private protected Reservation(long usdNanos, long tokens, long expiresAtMs)
    {
        UsdNanos = usdNanos;
        ReservedTokens = tokens;
        ExpiresAtMs = expiresAtMs;
    }

    /// <summary>Unique across replicas; for logs.</summary>
    public string Id => _id ??= FormatId();

    /// <summary>The worst-case cost held (rounded up to the store's nano-dollar unit).</summary>
    public decimal ReservedUsd => UsdAmount.ToUsd(UsdNanos);

    /// <summary>The worst-case tokens held.</summary>
    public long ReservedTokens { get; }

    /// <summary>After this instant the store gives the reservation back by itself.</summary>
    public DateTimeOffset ExpiresAt => DateTimeOffset.FromUnixTimeMilliseconds(ExpiresAtMs);

    /// <summary>
    /// The call's step in its run: the run's admissions (LLM and tool calls on one counter) up to and including this
    /// one, counted by the store, so across replicas with Redis; 0 when the call belongs to no run.
    /// </summary>
    public long Step { get; internal set; }

    internal long UsdNanos { get; }

    internal long ExpiresAtMs { get; }

    /// <summary>The id of a reservation made without one; formatting it twice in a race gives the same string.</summary>
    private protected virtual string FormatId() => throw new InvalidOperationException("The reservation has no id.");

    /// <summary>First settle/release wins; the rest are no-ops.</summary>
    internal bool TryComplete() => Interlocked.Exchange(ref _completed, 1) == 0;
}
