namespace LlmGateway.Configuration;

/// <summary>Retries, timeouts, circuit breakers and the retry guards.</summary>
public sealed record ResilienceOptions
{
    /// <summary>Upstream attempts per model, the first included (1 = no retries).</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Longest single wait before a retry; a provider asking for longer is not waited for (fallback or error).</summary>
    public TimeSpan MaxRetryWait { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Longest total of all retry waits of one call.</summary>
    public TimeSpan MaxTotalRetryWait { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>First backoff delay when the provider names none (exponential with jitter after it).</summary>
    public TimeSpan RetryBaseDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Time until response headers, per attempt.</summary>
    public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>No SSE chunk from upstream for this long aborts the stream.</summary>
    public TimeSpan StreamIdleTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Gateway-wide guard: retries may be at most this share of requests over the last 10 s (plus MinRetriesPerSecond).</summary>
    public double RetryBudgetRatio { get; init; } = 0.2;

    /// <summary>Retries always allowed per second regardless of the ratio, so a quiet gateway can still retry.</summary>
    public int MinRetriesPerSecond { get; init; } = 2;

    /// <summary>Most retries one agent run may cause (per gateway replica); 0 = no per-run cap.</summary>
    public int MaxRetriesPerRun { get; init; } = 10;

    public CircuitBreakerOptions CircuitBreaker { get; init; } = new();
}

/// <summary>A circuit per upstream (provider + model): opens when failures pass the ratio within the window.</summary>
public sealed record CircuitBreakerOptions
{
    public double FailureRatio { get; init; } = 0.5;
    public TimeSpan SamplingDuration { get; init; } = TimeSpan.FromSeconds(30);
    public int MinimumThroughput { get; init; } = 10;
    public TimeSpan BreakDuration { get; init; } = TimeSpan.FromSeconds(30);
}
