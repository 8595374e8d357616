using LlmGateway.Configuration;

namespace LlmGateway.Budgets;

/// <summary>One call to admit: who makes it, every limit that applies to it (from the active config) and its worst case.</summary>
/// <remarks>
/// Limits travel with each request rather than living in the store, so a config reload applies to the next call
/// on every replica. A limit of 0 means "no limit" everywhere.
/// </remarks>
public sealed record AdmissionRequest
{
    /// <summary>The configured user the caller's key belongs to; their period budget is always tracked.</summary>
    public required string User { get; init; }

    public BudgetLimits UserBudget { get; init; }

    public BudgetPeriod UserBudgetPeriod { get; init; } = BudgetPeriod.Day;

    public RateLimits UserRateLimits { get; init; }

    /// <summary>At most this many admitted calls of the user at once; 0 = unlimited.</summary>
    public int UserMaxInFlight { get; init; }

    /// <summary>The user's team, if any; its period budget is tracked when set.</summary>
    public string? Team { get; init; }

    public BudgetLimits TeamBudget { get; init; }

    public BudgetPeriod TeamBudgetPeriod { get; init; } = BudgetPeriod.Month;

    /// <summary>The gateway key's id (never the secret), for per-key rate limits.</summary>
    public string? KeyId { get; init; }

    public RateLimits KeyRateLimits { get; init; }

    /// <summary>The <c>X-Run-Id</c>; null when the call belongs to no run.</summary>
    public string? RunId { get; init; }

    public BudgetLimits RunBudget { get; init; }

    /// <summary>Time allowed from the run's first admitted call; zero = no deadline.</summary>
    public TimeSpan RunDeadline { get; init; }

    /// <summary>At most this many admissions of the same <see cref="RequestHash"/> in one run; 0 = no loop guard.</summary>
    public int RunMaxRepeats { get; init; }

    public int RunMaxInFlight { get; init; }

    /// <summary>Hash of the normalized request body, for the loop guard; null skips it (e.g. tool calls).</summary>
    public string? RequestHash { get; init; }

    /// <summary>Worst-case cost: estimated prompt plus maximum output at the model's prices. 0 for a free model.</summary>
    public decimal ReserveUsd { get; init; }

    /// <summary>Worst-case tokens, charged to token budgets and to TPM until settlement corrects them.</summary>
    public long ReserveTokens { get; init; }

    /// <summary>How long the reservation holds if never settled (e.g. attempts × attempt timeout + margin).</summary>
    public required TimeSpan ReservationTtl { get; init; }
}

/// <summary>Limits of one budget scope over its period; 0 = unlimited.</summary>
public readonly record struct BudgetLimits(decimal Usd, long Tokens, long Calls)
{
    public bool IsUnlimited => Usd <= 0 && Tokens <= 0 && Calls <= 0;
}

/// <summary>Requests and tokens per minute; 0 = unlimited.</summary>
public readonly record struct RateLimits(long RequestsPerMinute, long TokensPerMinute)
{
    public bool IsUnlimited => RequestsPerMinute <= 0 && TokensPerMinute <= 0;
}
