namespace LlmGateway.Resilience;

/// <summary>What one upstream attempt (or the whole retried sequence for one model) came to.</summary>
internal enum AttemptKind
{
    /// <summary>An answer reached the caller (or the caller left): nothing more to try.</summary>
    Delivered,

    /// <summary>A transient failure with nothing sent to the caller: retry, then fall back.</summary>
    Retryable,

    /// <summary>The circuit of this upstream is open: fall back at once.</summary>
    CircuitOpen,

    /// <summary>The provider's bulkhead is full: fall back at once.</summary>
    BulkheadFull,

    /// <summary>No deployment of a model with several can take the call (circuits open, bulkheads full, windows full): fall back at once.</summary>
    NoDeployment,
}

/// <param name="Status">The status to answer with if this is the last word (upstream status, 502, 504...).</param>
/// <param name="RetryAfter">The wait the upstream asked for, or until the circuit may close.</param>
/// <param name="Reason">Short label for metrics and logs: the status, "timeout" or "connection".</param>
internal readonly record struct AttemptOutcome(AttemptKind Kind, int Status, TimeSpan? RetryAfter, string Reason)
{
    public static readonly AttemptOutcome Delivered = new(AttemptKind.Delivered, 0, null, "delivered");
}
