namespace LlmGateway.Budgets;

/// <summary>Expiry of reservations, the sweep of idle runs and old periods, and lookups that create state.</summary>
internal sealed partial class InMemoryAdmissionStore
{
    /// <summary>Gives back the worst case held by reservations whose TTL passed (their gateway died or lost them).</summary>
    private void ExpireHeld(long now)
    {
        while (_held.Count > 0)
        {
            var first = _held.Min!;
            if (first.ExpiresAtMs > now)
            {
                return;
            }

            Unhold(first);
        }
    }

    private void Unhold(MemoryReservation held)
    {
        if (!held.Held)
        {
            return;
        }

        held.Held = false;
        _held.Remove(held);
        held.UserBudget.Unhold(held.UsdNanos, held.ReservedTokens);
        held.TeamBudget?.Unhold(held.UsdNanos, held.ReservedTokens);
        held.Run?.Budget.Unhold(held.UsdNanos, held.ReservedTokens);
        held.User.InFlight--;
    }

    /// <summary>
    /// True when a new run may be tracked. At <see cref="AdmissionStoreOptions.MaxRuns"/> the idle runs are swept first
    /// (at most once a second, so a flood of new run ids refused here does not scan the map on every call). Nothing
    /// live is evicted: a forgotten run would start over with an empty budget, calls count and deadline.
    /// </summary>
    private bool HasRoomForRun(long now)
    {
        if (_runs.Count < _maxRuns)
        {
            return true;
        }

        if (now >= _nextFullSweepMs)
        {
            _nextFullSweepMs = now + AdmissionConstants.SecondMs;
            SweepIfDue(now, force: true);
        }

        return _runs.Count < _maxRuns;
    }

    private void SweepIfDue(long now, bool force = false)
    {
        if (now < _nextSweepMs && !force)
        {
            return;
        }

        _nextSweepMs = now + _sweepMs;
        List<string>? stale = null;
        foreach (var (id, run) in _runs)
        {
            if (now - run.LastActivityMs >= _idleMs)
            {
                (stale ??= []).Add(id);
            }
        }

        RemoveAll(_runs, stale);
        stale?.Clear();
        foreach (var (id, window) in _keyWindows)
        {
            window.Purge(AdmissionConstants.Second(now));
            if (window.Oldest is null)
            {
                (stale ??= []).Add(id);
            }
        }

        RemoveAll(_keyWindows, stale);
        foreach (var state in _users.Values)
        {
            state.Budgets.Sweep(now, _retentionMs);
        }

        foreach (var budgets in _teams.Values)
        {
            budgets.Sweep(now, _retentionMs);
        }

        static void RemoveAll<T>(Dictionary<string, T> map, List<string>? keys)
        {
            if (keys is null)
            {
                return;
            }

            foreach (var key in keys)
            {
                map.Remove(key);
            }
        }
    }

    /// <summary>The run, or null when unknown or idle for <see cref="AdmissionStoreOptions.RunIdleExpiry"/> (then forgotten).</summary>
    private RunState? FindRun(string runId, long now)
    {
        if (!_runs.TryGetValue(runId, out var run))
        {
            return null;
        }

        if (now - run.LastActivityMs >= _idleMs)
        {
            _runs.Remove(runId);
            return null;
        }

        return run;
    }

    private UserState GetOrAddUser(string user)
    {
        if (!_users.TryGetValue(user, out var state))
        {
            state = new UserState();
            _users[user] = state;
        }

        return state;
    }

    private PeriodBudgets GetOrAddTeam(string team)
    {
        if (!_teams.TryGetValue(team, out var budgets))
        {
            budgets = new PeriodBudgets();
            _teams[team] = budgets;
        }

        return budgets;
    }

    private RateWindow GetOrAddKeyWindow(string keyId)
    {
        if (!_keyWindows.TryGetValue(keyId, out var window))
        {
            window = new RateWindow();
            _keyWindows[keyId] = window;
        }

        return window;
    }
}
