namespace LlmGateway.Budgets;

/// <summary>Operator controls and reads: halting, resuming, the admin API's run and user state.</summary>
internal sealed partial class InMemoryAdmissionStore
{
    public ValueTask HaltRunAsync(string runId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        var now = NowMs();
        lock (_lock)
        {
            if (FindRun(runId, now) is not { } run)
            {
                run = new RunState();
                _runs[runId] = run;
            }

            run.Halted = true;
            run.LastActivityMs = now;
        }

        return default;
    }

    public ValueTask ResumeRunAsync(string runId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        var now = NowMs();
        lock (_lock)
        {
            if (FindRun(runId, now) is { } run)
            {
                run.Halted = false;
            }
        }

        return default;
    }

    public ValueTask HaltUserAsync(string user, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        lock (_lock)
        {
            GetOrAddUser(user).Halted = true;
        }

        return default;
    }

    public ValueTask ResumeUserAsync(string user, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        lock (_lock)
        {
            if (_users.TryGetValue(user, out var state))
            {
                state.Halted = false;
            }
        }

        return default;
    }

    public ValueTask<RunBudgetState?> GetRunStateAsync(string runId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        var now = NowMs();
        lock (_lock)
        {
            ExpireHeld(now);
            if (FindRun(runId, now) is not { } run)
            {
                return new ValueTask<RunBudgetState?>((RunBudgetState?)null);
            }

            var budget = run.Budget;
            return new ValueTask<RunBudgetState?>(new RunBudgetState
            {
                RunId = runId,
                User = run.User,
                SpentUsd = UsdAmount.ToUsd(budget.SpentUsd),
                SpentTokens = budget.SpentTokens,
                Calls = budget.Calls,
                ReservedUsd = UsdAmount.ToUsd(budget.ReservedUsd),
                ReservedTokens = budget.ReservedTokens,
                InFlight = budget.ReservedCalls,
                StartedAt = run.StartMs >= 0 ? DateTimeOffset.FromUnixTimeMilliseconds(run.StartMs) : null,
                Deadline = run.StartMs >= 0 && run.DeadlineMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(run.StartMs + run.DeadlineMs) : null,
                LastActivityAt = DateTimeOffset.FromUnixTimeMilliseconds(run.LastActivityMs),
                Halted = run.Halted,
                Limits = budget.Limits.ToBudgetLimits(),
            });
        }
    }

    public ValueTask<UserBudgetState> GetUserStateAsync(string user, string periodKey, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        ArgumentException.ThrowIfNullOrEmpty(periodKey);
        var now = NowMs();
        lock (_lock)
        {
            ExpireHeld(now);
            _users.TryGetValue(user, out var state);
            var budget = state?.Budgets.Find(periodKey);
            return new ValueTask<UserBudgetState>(new UserBudgetState
            {
                User = user,
                PeriodKey = periodKey,
                PeriodEnd = budget is { EndMs: > 0 } ? DateTimeOffset.FromUnixTimeMilliseconds(budget.EndMs) : null,
                SpentUsd = UsdAmount.ToUsd(budget?.SpentUsd ?? 0),
                SpentTokens = budget?.SpentTokens ?? 0,
                Calls = budget?.Calls ?? 0,
                ReservedUsd = UsdAmount.ToUsd(budget?.ReservedUsd ?? 0),
                ReservedTokens = budget?.ReservedTokens ?? 0,
                InFlight = state?.InFlight ?? 0,
                Halted = state?.Halted ?? false,
                Limits = budget?.Limits.ToBudgetLimits() ?? default,
            });
        }
    }

    public ValueTask<bool> PingAsync(CancellationToken cancellationToken = default) => new(true);
}
