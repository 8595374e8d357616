using LlmGateway.Configuration;

namespace LlmGateway.Budgets;

/// <summary>
/// The single-process admission store (the default). Same semantics as <see cref="RedisAdmissionStore"/>,
/// decision for decision: the order of checks, the per-second rate windows, expiry rounded up to the second
/// and the rounding of amounts are the same.
/// </summary>
/// <remarks>
/// One lock guards everything. An admission touches a user, a team, a run and a key at once, and the work
/// under the lock is a few dictionary hits and additions (no I/O, no LINQ, a handful of small objects), so
/// finer locks would buy little and cost lock-ordering rules. Reservations past their TTL are returned at the
/// start of every call; idle runs and periods past retention are swept every <see cref="AdmissionStoreOptions.SweepInterval"/>.
/// </remarks>
internal sealed class InMemoryAdmissionStore : IAdmissionStore
{

    /// <summary>Read-only stand-in for a run that does not exist yet.</summary>
    private static readonly BudgetCounter EmptyBudget = new(BudgetPeriod.Total, 0, BudgetPeriods.TotalKey, 0);

    private readonly Lock _lock = new();
    private readonly TimeProvider _timeProvider;
    private readonly long _idleMs;
    private readonly long _retentionMs;
    private readonly long _inFlightRetryMs;
    private readonly long _sweepMs;
    private readonly string _idPrefix;
    private readonly Dictionary<string, UserState> _users = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PeriodBudgets> _teams = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RunState> _runs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RateWindow> _keyWindows = new(StringComparer.Ordinal);
    private readonly SortedSet<MemoryReservation> _held = new(MemoryReservation.ByExpiry);
    private long _sequence;
    private long _nextSweepMs;

    public InMemoryAdmissionStore(AdmissionStoreOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        options.Validate();
        _timeProvider = timeProvider;
        _idleMs = ToMs(options.RunIdleExpiry);
        _retentionMs = ToMs(options.PeriodRetention);
        _inFlightRetryMs = ToMs(options.InFlightRetryAfter);
        _sweepMs = ToMs(options.SweepInterval);
        _idPrefix = ReservationIds.NewPrefix();
    }

    /// <summary>Runs currently tracked (tests: bounded memory).</summary>
    internal int RunCount
    {
        get
        {
            lock (_lock)
            {
                return _runs.Count;
            }
        }
    }

    public ValueTask<AdmissionResult> ReserveAsync(AdmissionRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        var now = NowMs();
        lock (_lock)
        {
            return new ValueTask<AdmissionResult>(Reserve(request, now));
        }
    }

    public ValueTask SettleAsync(Reservation reservation, decimal actualUsd, long actualTokens, CancellationToken cancellationToken = default)
    {
        var held = Own(reservation);
        if (!held.TryComplete())
        {
            return default;
        }

        var usd = UsdAmount.ToNanosCeiling(actualUsd);
        var tokens = Math.Max(0, actualTokens);
        var now = NowMs();
        lock (_lock)
        {
            ExpireHeld(now);
            Unhold(held);
            held.UserBudget.Charge(usd, tokens);
            held.TeamBudget?.Charge(usd, tokens);
            if (held.Run is { } run)
            {
                run.Budget.Charge(usd, tokens);
                run.LastActivityMs = now;
            }

            held.UserWindow?.Correct(held.AdmissionSecond, held.ReservedTokens, tokens);
            held.KeyWindow?.Correct(held.AdmissionSecond, held.ReservedTokens, tokens);
        }

        return default;
    }

    public ValueTask ReleaseAsync(Reservation reservation, CancellationToken cancellationToken = default)
    {
        var held = Own(reservation);
        if (!held.TryComplete())
        {
            return default;
        }

        var now = NowMs();
        lock (_lock)
        {
            ExpireHeld(now);
            Unhold(held);
            if (held.Run is { } run)
            {
                if (held.RequestHash is { } hash)
                {
                    run.RemoveRepeat(hash);
                }

                run.LastActivityMs = now;
            }

            held.UserWindow?.Remove(held.AdmissionSecond, held.ReservedTokens);
            held.KeyWindow?.Remove(held.AdmissionSecond, held.ReservedTokens);
        }

        return default;
    }

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

    private static long ToMs(TimeSpan value) => (long)value.TotalMilliseconds;

    private static TimeSpan? RetryAt(long atMs, long nowMs) => atMs >= 0 ? TimeSpan.FromMilliseconds(atMs - nowMs) : null;

    private static RateLimitSnapshot Tighter(RateLimitSnapshot best, long limit, long remaining, RateWindow window, long now)
    {
        if (limit <= 0)
        {
            return best;
        }

        remaining = Math.Max(0, remaining);
        if (best.Limit > 0 && remaining >= best.Remaining)
        {
            return best;
        }

        return new RateLimitSnapshot(limit, remaining, TimeSpan.FromMilliseconds(window.ResetMs(now)));
    }

    private static AdmissionResult Reject(
        AdmissionRejection rejection,
        AdmissionScope scope,
        AdmissionLimit limit,
        decimal value,
        TimeSpan? retryAfter,
        BudgetFractions fractions,
        RateLimitSnapshot requests = default,
        RateLimitSnapshot tokens = default) =>
        new(null, rejection, scope, limit, value, retryAfter, requests, tokens, fractions);

    private static decimal LimitValue(AdmissionLimit limit, long value) =>
        limit == AdmissionLimit.Usd ? UsdAmount.ToUsd(value) : value;

    private AdmissionResult Reserve(AdmissionRequest request, long now)
    {
        ExpireHeld(now);
        SweepIfDue(now);

        var usd = UsdAmount.ToNanosCeiling(request.ReserveUsd);
        var tokens = Math.Max(0, request.ReserveTokens);
        var ttlMs = Math.Max(1, ToMs(request.ReservationTtl));
        var nowSecond = AdmissionConstants.Second(now);
        var hash = string.IsNullOrEmpty(request.RequestHash) ? null : request.RequestHash;

        var user = GetOrAddUser(request.User);
        var userLimits = new NanoLimits(request.UserBudget);
        var userBudget = user.Budgets.Get(request.UserBudgetPeriod, now);
        var teamLimits = new NanoLimits(request.TeamBudget);
        var teamBudget = request.Team is { } team ? GetOrAddTeam(team).Get(request.TeamBudgetPeriod, now) : null;
        var runLimits = new NanoLimits(request.RunBudget);
        var run = request.RunId is { } runId ? FindRun(runId, now) : null;

        var userRates = request.UserRateLimits;
        var userLog = userRates.IsUnlimited ? null : user.Window ??= new RateWindow();
        var keyRates = request.KeyRateLimits;
        var keyLog = request.KeyId is null || keyRates.IsUnlimited ? null : GetOrAddKeyWindow(request.KeyId);
        userLog?.Purge(nowSecond);
        keyLog?.Purge(nowSecond);

        var fractions = new BudgetFractions(
            userBudget.Fraction(userLimits),
            teamBudget?.Fraction(teamLimits) ?? 0,
            run?.Budget.Fraction(runLimits) ?? 0);

        // The order of checks decides which reason a caller sees: control first, then what no retry fixes
        // (deadline, loop, budgets), then what waiting fixes (in-flight, rate limits).
        if (user.Halted)
        {
            return Reject(AdmissionRejection.UserHalted, AdmissionScope.User, AdmissionLimit.None, 0, null, fractions);
        }

        var deadlineMs = Math.Max(0, ToMs(request.RunDeadline));
        if (run is not null)
        {
            if (run.Halted)
            {
                return Reject(AdmissionRejection.RunHalted, AdmissionScope.Run, AdmissionLimit.None, 0, null, fractions);
            }

            if (deadlineMs > 0 && run.StartMs >= 0 && now >= run.StartMs + deadlineMs)
            {
                return Reject(AdmissionRejection.RunDeadlineExceeded, AdmissionScope.Run, AdmissionLimit.Deadline, deadlineMs / 1000m, null, fractions);
            }

            if (request.RunMaxRepeats > 0 && hash is not null && run.Repeats(hash) + 1 > request.RunMaxRepeats)
            {
                return Reject(AdmissionRejection.LoopDetected, AdmissionScope.Run, AdmissionLimit.Repeats, request.RunMaxRepeats, null, fractions);
            }
        }

        var failed = userBudget.Check(userLimits, usd, tokens, out var limitValue);
        if (failed != AdmissionLimit.None)
        {
            return Reject(AdmissionRejection.BudgetExceeded, AdmissionScope.User, failed, LimitValue(failed, limitValue), RetryAt(userBudget.EndMs > 0 ? userBudget.EndMs : -1, now), fractions);
        }

        if (teamBudget is not null)
        {
            failed = teamBudget.Check(teamLimits, usd, tokens, out limitValue);
            if (failed != AdmissionLimit.None)
            {
                return Reject(AdmissionRejection.BudgetExceeded, AdmissionScope.Team, failed, LimitValue(failed, limitValue), RetryAt(teamBudget.EndMs > 0 ? teamBudget.EndMs : -1, now), fractions);
            }
        }

        if (request.RunId is not null)
        {
            // A run's first call is checked against an empty run: a single call may not exceed the run budget.
            failed = (run?.Budget ?? EmptyBudget).Check(runLimits, usd, tokens, out limitValue);
            if (failed != AdmissionLimit.None)
            {
                return Reject(AdmissionRejection.BudgetExceeded, AdmissionScope.Run, failed, LimitValue(failed, limitValue), null, fractions);
            }
        }

        var inFlightRetry = TimeSpan.FromMilliseconds(_inFlightRetryMs);
        if (request.UserMaxInFlight > 0 && user.InFlight + 1 > request.UserMaxInFlight)
        {
            return Reject(AdmissionRejection.RateLimitExceeded, AdmissionScope.User, AdmissionLimit.InFlight, request.UserMaxInFlight, inFlightRetry, fractions);
        }

        if (run is not null && request.RunMaxInFlight > 0 && run.Budget.ReservedCalls + 1 > request.RunMaxInFlight)
        {
            return Reject(AdmissionRejection.RateLimitExceeded, AdmissionScope.Run, AdmissionLimit.InFlight, request.RunMaxInFlight, inFlightRetry, fractions);
        }

        if (userLog is not null && CheckRate(userLog, userRates, tokens, now, out var rateLimit, out var rateRetry))
        {
            return RejectRate(AdmissionScope.User, rateLimit, rateRetry);
        }

        if (keyLog is not null && CheckRate(keyLog, keyRates, tokens, now, out rateLimit, out rateRetry))
        {
            return RejectRate(AdmissionScope.Key, rateLimit, rateRetry);
        }

        // Everything fits: hold the worst case everywhere.
        var sequence = ++_sequence;
        var expiresAtMs = AdmissionConstants.ExpirySecond(now + ttlMs) * AdmissionConstants.SecondMs;
        var reservation = new MemoryReservation(this, usd, tokens, expiresAtMs, sequence)
        {
            User = user,
            AdmissionSecond = nowSecond,
            UserBudget = userBudget,
            TeamBudget = teamBudget,
            RequestHash = hash,
        };

        userBudget.Hold(usd, tokens, userLimits);
        teamBudget?.Hold(usd, tokens, teamLimits);
        user.InFlight++;
        if (request.RunId is { } id)
        {
            if (run is null)
            {
                run = new RunState();
                _runs[id] = run;
            }

            if (run.StartMs < 0)
            {
                run.StartMs = now;
            }

            run.LastActivityMs = now;
            run.DeadlineMs = deadlineMs;
            run.User = request.User;
            run.Budget.Hold(usd, tokens, runLimits);
            if (hash is not null)
            {
                run.AddRepeat(hash);
            }

            reservation.Run = run;
        }

        if (userLog is not null)
        {
            userLog.Add(nowSecond, tokens);
            reservation.UserWindow = userLog;
        }

        if (keyLog is not null)
        {
            keyLog.Add(nowSecond, tokens);
            reservation.KeyWindow = keyLog;
        }

        _held.Add(reservation);
        var (requests, tokenSnapshot) = Snapshot(userLog, userRates, keyLog, keyRates, now);
        return new AdmissionResult(reservation, AdmissionRejection.None, AdmissionScope.None, AdmissionLimit.None, 0, null, requests, tokenSnapshot, fractions);

        AdmissionResult RejectRate(AdmissionScope scope, AdmissionLimit limit, long retryAtMs)
        {
            var value = limit == AdmissionLimit.RequestsPerMinute
                ? (scope == AdmissionScope.User ? userRates : keyRates).RequestsPerMinute
                : (scope == AdmissionScope.User ? userRates : keyRates).TokensPerMinute;
            var (requests, tokenSnapshot) = Snapshot(userLog, userRates, keyLog, keyRates, now);
            return Reject(AdmissionRejection.RateLimitExceeded, scope, limit, value, RetryAt(retryAtMs, now), fractions, requests, tokenSnapshot);
        }
    }

    /// <summary>True when the call does not fit; <paramref name="retryAtMs"/> is when it will (-1: never, it is larger than the limit).</summary>
    private static bool CheckRate(RateWindow log, RateLimits limits, long tokens, long now, out AdmissionLimit limit, out long retryAtMs)
    {
        var nowSecond = AdmissionConstants.Second(now);
        var rpm = limits.RequestsPerMinute;
        if (rpm > 0 && log.Requests + 1 > rpm)
        {
            limit = AdmissionLimit.RequestsPerMinute;
            retryAtMs = log.FreeingMs(log.Requests + 1 - rpm, tokens: false, nowSecond);
            return true;
        }

        var tpm = limits.TokensPerMinute;
        if (tpm > 0 && tokens > 0 && log.Tokens + tokens > tpm)
        {
            limit = AdmissionLimit.TokensPerMinute;
            retryAtMs = tokens > tpm ? -1 : log.FreeingMs(log.Tokens + tokens - tpm, tokens: true, nowSecond);
            return true;
        }

        limit = AdmissionLimit.None;
        retryAtMs = -1;
        return false;
    }

    private static (RateLimitSnapshot Requests, RateLimitSnapshot Tokens) Snapshot(
        RateWindow? userLog, RateLimits userRates, RateWindow? keyLog, RateLimits keyRates, long now)
    {
        RateLimitSnapshot requests = default, tokens = default;
        if (userLog is not null)
        {
            requests = Tighter(requests, userRates.RequestsPerMinute, userRates.RequestsPerMinute - userLog.Requests, userLog, now);
            tokens = Tighter(tokens, userRates.TokensPerMinute, userRates.TokensPerMinute - userLog.Tokens, userLog, now);
        }

        if (keyLog is not null)
        {
            requests = Tighter(requests, keyRates.RequestsPerMinute, keyRates.RequestsPerMinute - keyLog.Requests, keyLog, now);
            tokens = Tighter(tokens, keyRates.TokensPerMinute, keyRates.TokensPerMinute - keyLog.Tokens, keyLog, now);
        }

        return (requests, tokens);
    }

    private MemoryReservation Own(Reservation reservation)
    {
        ArgumentNullException.ThrowIfNull(reservation);
        if (reservation is not MemoryReservation held || !ReferenceEquals(held.Store, this))
        {
            throw new ArgumentException("The reservation was made by another store.", nameof(reservation));
        }

        return held;
    }

    private long NowMs() => _timeProvider.GetUtcNow().ToUnixTimeMilliseconds();

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

    private void SweepIfDue(long now)
    {
        if (now < _nextSweepMs)
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

    /// <summary>Budget limits in the store's units.</summary>
    private readonly record struct NanoLimits(long Usd, long Tokens, long Calls)
    {
        public NanoLimits(BudgetLimits limits)
            : this(UsdAmount.ToNanosFloor(limits.Usd), Math.Max(0, limits.Tokens), Math.Max(0, limits.Calls))
        {
        }

        public BudgetLimits ToBudgetLimits() => new(UsdAmount.ToUsd(Usd), Tokens, Calls);
    }

    /// <summary>Spend and holds of one scope (a user's or team's period, or a run).</summary>
    private sealed class BudgetCounter(BudgetPeriod period, long periodId, string periodKey, long endMs)
    {
        public BudgetPeriod Period { get; } = period;

        public long PeriodId { get; } = periodId;

        public string PeriodKey { get; } = periodKey;

        /// <summary>Unix ms when the period ends; 0 for Total and for runs.</summary>
        public long EndMs { get; } = endMs;

        public long SpentUsd { get; private set; }

        public long SpentTokens { get; private set; }

        public long Calls { get; private set; }

        public long ReservedUsd { get; private set; }

        public long ReservedTokens { get; private set; }

        public int ReservedCalls { get; private set; }

        public NanoLimits Limits { get; private set; }

        /// <summary>
        /// The first limit the call would pass. An amount of 0 never fails its limit, so a free model is never
        /// blocked by a USD budget, even an exhausted one; every call needs one unit of the calls limit.
        /// </summary>
        public AdmissionLimit Check(NanoLimits limits, long usd, long tokens, out long limit)
        {
            if (limits.Usd > 0 && usd > 0 && SpentUsd + ReservedUsd + usd > limits.Usd)
            {
                limit = limits.Usd;
                return AdmissionLimit.Usd;
            }

            if (limits.Tokens > 0 && tokens > 0 && SpentTokens + ReservedTokens + tokens > limits.Tokens)
            {
                limit = limits.Tokens;
                return AdmissionLimit.Tokens;
            }

            if (limits.Calls > 0 && Calls + ReservedCalls + 1 > limits.Calls)
            {
                limit = limits.Calls;
                return AdmissionLimit.Calls;
            }

            limit = 0;
            return AdmissionLimit.None;
        }

        public double Fraction(NanoLimits limits)
        {
            double fraction = 0;
            if (limits.Usd > 0)
            {
                fraction = Math.Max(fraction, (double)(SpentUsd + ReservedUsd) / limits.Usd);
            }

            if (limits.Tokens > 0)
            {
                fraction = Math.Max(fraction, (double)(SpentTokens + ReservedTokens) / limits.Tokens);
            }

            if (limits.Calls > 0)
            {
                fraction = Math.Max(fraction, (double)(Calls + ReservedCalls) / limits.Calls);
            }

            return Math.Floor(fraction * AdmissionConstants.FractionScale) / AdmissionConstants.FractionScale;
        }

        public void Hold(long usd, long tokens, NanoLimits limits)
        {
            ReservedUsd += usd;
            ReservedTokens += tokens;
            ReservedCalls++;
            Limits = limits;
        }

        public void Unhold(long usd, long tokens)
        {
            ReservedUsd -= usd;
            ReservedTokens -= tokens;
            ReservedCalls--;
        }

        public void Charge(long usd, long tokens)
        {
            SpentUsd += usd;
            SpentTokens += tokens;
            Calls++;
        }
    }

    /// <summary>A user's or team's counters per budget period, kept until the period's retention ends.</summary>
    private sealed class PeriodBudgets
    {
        private readonly List<BudgetCounter> _periods = new(2);
        private BudgetCounter? _current;

        public BudgetCounter Get(BudgetPeriod period, long now)
        {
            var id = BudgetPeriods.GetId(period, now);
            if (_current is { } current && current.Period == period && current.PeriodId == id)
            {
                return current;
            }

            foreach (var existing in _periods)
            {
                if (existing.Period == period && existing.PeriodId == id)
                {
                    return _current = existing;
                }
            }

            var instant = DateTimeOffset.FromUnixTimeMilliseconds(now);
            var end = BudgetPeriods.GetEnd(period, instant);
            var created = new BudgetCounter(period, id, BudgetPeriods.GetKey(period, instant), end?.ToUnixTimeMilliseconds() ?? 0);
            _periods.Add(created);
            return _current = created;
        }

        public BudgetCounter? Find(string periodKey)
        {
            foreach (var existing in _periods)
            {
                if (string.Equals(existing.PeriodKey, periodKey, StringComparison.Ordinal))
                {
                    return existing;
                }
            }

            return null;
        }

        /// <summary>Forgets periods that ended more than the retention ago (what Redis key expiry does).</summary>
        public void Sweep(long now, long retentionMs)
        {
            for (var i = _periods.Count - 1; i >= 0; i--)
            {
                var period = _periods[i];
                if (period.EndMs > 0 && period.EndMs + retentionMs <= now && period.ReservedCalls == 0)
                {
                    _periods.RemoveAt(i);
                    if (ReferenceEquals(_current, period))
                    {
                        _current = null;
                    }
                }
            }
        }
    }

    private sealed class UserState
    {
        public PeriodBudgets Budgets { get; } = new();

        public bool Halted { get; set; }

        public int InFlight { get; set; }

        public RateWindow? Window { get; set; }
    }

    private sealed class RunState
    {
        private Dictionary<string, int>? _repeats;

        public BudgetCounter Budget { get; } = new(BudgetPeriod.Total, 0, BudgetPeriods.TotalKey, 0);

        public long StartMs { get; set; } = -1;

        public long LastActivityMs { get; set; }

        public long DeadlineMs { get; set; }

        public bool Halted { get; set; }

        public string? User { get; set; }

        public int Repeats(string hash) => _repeats is not null && _repeats.TryGetValue(hash, out var count) ? count : 0;

        public void AddRepeat(string hash)
        {
            _repeats ??= new Dictionary<string, int>(StringComparer.Ordinal);
            _repeats[hash] = Repeats(hash) + 1;
        }

        public void RemoveRepeat(string hash)
        {
            var count = Repeats(hash) - 1;
            if (count > 0)
            {
                _repeats![hash] = count;
            }
            else
            {
                _repeats?.Remove(hash);
            }
        }
    }

    private sealed class MemoryReservation(InMemoryAdmissionStore store, long usdNanos, long tokens, long expiresAtMs, long sequence)
        : Reservation(usdNanos, tokens, expiresAtMs)
    {
        public static readonly IComparer<MemoryReservation> ByExpiry = Comparer<MemoryReservation>.Create(static (a, b) =>
        {
            var byTime = a.ExpiresAtMs.CompareTo(b.ExpiresAtMs);
            return byTime != 0 ? byTime : a.Sequence.CompareTo(b.Sequence);
        });

        public InMemoryAdmissionStore Store { get; } = store;

        public long Sequence { get; } = sequence;

        // Ids only appear in logs of failed settlements: formatted on demand, not on every admission.
        private protected override string FormatId() => ReservationIds.Format(Store._idPrefix, Sequence);

        /// <summary>True while the worst case is held (not yet settled, released or expired).</summary>
        public bool Held { get; set; } = true;

        public required UserState User { get; init; }

        public required BudgetCounter UserBudget { get; init; }

        public BudgetCounter? TeamBudget { get; init; }

        public RunState? Run { get; set; }

        public string? RequestHash { get; init; }

        /// <summary>The second of the rate windows that counts the call.</summary>
        public long AdmissionSecond { get; init; }

        public RateWindow? UserWindow { get; set; }

        public RateWindow? KeyWindow { get; set; }
    }
}
