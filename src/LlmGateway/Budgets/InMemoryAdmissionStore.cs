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
internal sealed partial class InMemoryAdmissionStore : IAdmissionStore
{

    /// <summary>Read-only stand-in for a run that does not exist yet.</summary>
    private static readonly BudgetCounter EmptyBudget = new(BudgetPeriod.Total, 0, BudgetPeriods.TotalKey, 0);

    private readonly Lock _lock = new();
    private readonly TimeProvider _timeProvider;
    private readonly long _idleMs;
    private readonly long _retentionMs;
    private readonly long _inFlightRetryMs;
    private readonly long _sweepMs;
    private readonly int _maxRuns;
    private readonly string _idPrefix;
    private readonly Dictionary<string, UserState> _users = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PeriodBudgets> _teams = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RunState> _runs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RateWindow> _keyWindows = new(StringComparer.Ordinal);
    private readonly SortedSet<MemoryReservation> _held = new(MemoryReservation.ByExpiry);
    private long _sequence;
    private long _nextSweepMs;
    private long _nextFullSweepMs;

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
        _maxRuns = options.MaxRuns;
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

    /// <summary>Distinct requests the loop guard counts for a run (tests: bounded memory).</summary>
    internal int RepeatHashCount(string runId)
    {
        lock (_lock)
        {
            return _runs.TryGetValue(runId, out var run) ? run.RepeatHashes : 0;
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


    private static long ToMs(TimeSpan value) => (long)value.TotalMilliseconds;

    private static TimeSpan? RetryAt(long atMs, long nowMs) => atMs >= 0 ? TimeSpan.FromMilliseconds(atMs - nowMs) : null;

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

        if (run is null && request.RunId is not null && !HasRoomForRun(now))
        {
            return Reject(AdmissionRejection.StoreFull, AdmissionScope.Run, AdmissionLimit.None, _maxRuns, TimeSpan.FromSeconds(1), fractions);
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
            reservation.Step = ++run.Steps;
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
}
