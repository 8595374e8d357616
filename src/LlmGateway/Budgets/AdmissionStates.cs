namespace LlmGateway.Budgets;

/// <summary>A run as the admin API shows it (<c>GET /admin/runs/{id}</c>).</summary>
public sealed record RunBudgetState
{
    public required string RunId { get; init; }

    /// <summary>The user of the run's latest admitted call.</summary>
    public string? User { get; init; }

    public decimal SpentUsd { get; init; }

    public long SpentTokens { get; init; }

    /// <summary>Settled calls (LLM and tool).</summary>
    public long Calls { get; init; }

    public decimal ReservedUsd { get; init; }

    public long ReservedTokens { get; init; }

    /// <summary>Admitted calls not yet settled or released.</summary>
    public int InFlight { get; init; }

    /// <summary>The run's first admitted call; null when it has none yet (e.g. halted before starting).</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>StartedAt + the deadline of the latest admission; null without one.</summary>
    public DateTimeOffset? Deadline { get; init; }

    public DateTimeOffset? LastActivityAt { get; init; }

    public bool Halted { get; init; }

    /// <summary>The run limits of the latest admission.</summary>
    public BudgetLimits Limits { get; init; }
}

/// <summary>A user's spend in one budget period and their control state (<c>GET /admin/users/{id}</c>).</summary>
public sealed record UserBudgetState
{
    public required string User { get; init; }

    public required string PeriodKey { get; init; }

    /// <summary>When the period ends; null for Total or when the period has seen no call.</summary>
    public DateTimeOffset? PeriodEnd { get; init; }

    public decimal SpentUsd { get; init; }

    public long SpentTokens { get; init; }

    public long Calls { get; init; }

    public decimal ReservedUsd { get; init; }

    public long ReservedTokens { get; init; }

    /// <summary>Admitted calls of the user not yet settled or released (all periods).</summary>
    public int InFlight { get; init; }

    public bool Halted { get; init; }

    /// <summary>The user budget limits of the latest admission in this period.</summary>
    public BudgetLimits Limits { get; init; }
}
