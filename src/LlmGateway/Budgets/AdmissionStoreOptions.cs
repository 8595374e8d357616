namespace LlmGateway.Budgets;

/// <summary>How the admission store behaves, independent of the per-request limits.</summary>
public sealed record AdmissionStoreOptions
{
    /// <summary>
    /// Prefix of every Redis key. Leave it without braces: keys are hash-tagged per scope ({u:user}, {t:team}, {r:run},
    /// {k:key}) so that a Redis Cluster spreads them; a tag in the prefix would put every key in one slot.
    /// </summary>
    public string KeyPrefix { get; init; } = "llmgw:";

    /// <summary>Every store call finishes within this time or throws <see cref="AdmissionStoreUnavailableException"/>.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Redis connect timeout; connecting happens in the background and never blocks a call longer than <see cref="OperationTimeout"/>.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A run with no admission, settlement or halt for this long is forgotten (its spend, deadline, halt).</summary>
    public TimeSpan RunIdleExpiry { get; init; } = TimeSpan.FromHours(24);

    /// <summary>How long a budget period's counters stay readable after it ends (admin API, late settlements).</summary>
    public TimeSpan PeriodRetention { get; init; } = TimeSpan.FromDays(31);

    /// <summary>Retry-After for a call refused by an in-flight cap.</summary>
    public TimeSpan InFlightRetryAfter { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>In-memory store: most runs tracked at once; when full (after sweeping idle ones) a new run is refused with <see cref="AdmissionRejection.StoreFull"/>.</summary>
    public int MaxRuns { get; init; } = 250_000;

    /// <summary>In-memory store: how often idle runs and old periods are swept (lazily, on a call).</summary>
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromMinutes(1);

    internal void Validate()
    {
        List<string>? errors = null;
        if (string.IsNullOrEmpty(KeyPrefix))
        {
            (errors ??= []).Add($"{nameof(KeyPrefix)} must not be empty");
        }

        Positive(OperationTimeout, nameof(OperationTimeout), ref errors);
        Positive(ConnectTimeout, nameof(ConnectTimeout), ref errors);
        Positive(RunIdleExpiry, nameof(RunIdleExpiry), ref errors);
        Positive(SweepInterval, nameof(SweepInterval), ref errors);
        if (MaxRuns <= 0)
        {
            (errors ??= []).Add($"{nameof(MaxRuns)} must be positive");
        }

        if (PeriodRetention < TimeSpan.Zero)
        {
            (errors ??= []).Add($"{nameof(PeriodRetention)} must not be negative");
        }

        if (InFlightRetryAfter < TimeSpan.Zero)
        {
            (errors ??= []).Add($"{nameof(InFlightRetryAfter)} must not be negative");
        }

        if (errors is not null)
        {
            throw new ArgumentException("Invalid admission store options: " + string.Join("; ", errors));
        }

        static void Positive(TimeSpan value, string name, ref List<string>? errors)
        {
            if (value <= TimeSpan.Zero)
            {
                (errors ??= []).Add($"{name} must be positive");
            }
        }
    }
}
