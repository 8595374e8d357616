using System.Collections.Concurrent;
using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Budgets.Leases;

/// <summary>
/// Exclusive run blocks (docs/redis-scale-out.md, "Runs"): a replica that admitted a run's last
/// <see cref="LeaseOptions.RunClaimAfter"/> calls in a row claims the whole run, decides its calls locally by the run
/// step's rules (<see cref="RunBlock.Decide"/>), writes its changes back every sweep, and lets go when another replica,
/// a halt or a state read asks (pub/sub), when it has been idle here for a while, or when Redis says it no longer owns it.
/// </summary>
internal sealed partial class LeasedAdmissionStore
{
    /// <summary>Steps a claim or write-back reserves ahead (a dead owner's unused ones are skipped, never repeated).</summary>
    private const long RunStepsAhead = 1024;

    /// <summary>
    /// An owner that admitted nothing of the run for this long lets it go: a block costs a write-back every sweep (4 a
    /// second), two calls' worth of per-call scripts, so only a run busy here keeps one.
    /// </summary>
    private const long RunIdleLetGoMs = 1_000;

    /// <summary>A close Redis did not confirm is tried again every sweep for this long, then given up (logged).</summary>
    private const long RunCloseGiveUpMs = 60_000;

    private readonly ConcurrentDictionary<string, RunBlock> _runs = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Task> _claims = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _claimRefusedUntil = new(StringComparer.Ordinal);
    private long _runClaims;
    private long _runCloses;
    private long _runLocalDecisions;
    private long _writeBacksInFlight;

    /// <summary>Runs claimed, closed (written back and let go), and calls decided on a run block; for tests.</summary>
    internal (long Claims, long Closes, long LocalDecisions) RunBlockCounts =>
        (Interlocked.Read(ref _runClaims), Interlocked.Read(ref _runCloses), Interlocked.Read(ref _runLocalDecisions));

    /// <summary>Claims sent and not yet answered (tests).</summary>
    internal int ClaimsInFlight => _claims.Count;

    /// <summary>Write-backs started and not yet finished (tests: a fake clock's sweep starts them).</summary>
    internal long WriteBacksInFlight => Interlocked.Read(ref _writeBacksInFlight);

    /// <summary>
    /// For tests: once no write-back is in flight, what this replica's block of the run holds and has settled that Redis
    /// does not have yet (zero without a block).
    /// </summary>
    internal async Task<RunTotals> RunBlockOutstandingAsync(string runId)
    {
        for (var i = 0; i < 500 && (WriteBacksInFlight > 0 || ClaimsInFlight > 0); i++)
        {
            await Task.Delay(2);
        }

        if (!_runs.TryGetValue(_inner.RunKeyOf(runId), out var block))
        {
            return default;
        }

        lock (block.Gate)
        {
            return block.Closed ? default : block.Sending.Plus(block.Pending).Plus(block.Held);
        }
    }

    /// <summary>Whether this replica owns the run now (tests).</summary>
    internal bool OwnsRun(string runId) => _runs.TryGetValue(_inner.RunKeyOf(runId), out var block) && block.Open;

    /// <summary>
    /// The run's answer for a call whose other scopes admitted it: on this replica's block of the run if it has one,
    /// else per call; a run another replica owns is asked to let go, and the call tried again.
    /// </summary>
    private async ValueTask<AdmissionResult> DecideRunAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        var key = _inner.RunKeyOf(request.RunId!);
        var started = Environment.TickCount64;
        for (var attempt = 0; ; attempt++)
        {
            if (_runs.TryGetValue(key, out var block))
            {
                if (OnBlock(block, request) is { } local)
                {
                    return local;
                }

                // Not decidable there (closing, out of steps, its claim about to run out): per call once Redis has it all.
                await CloseRunAsync(block).ConfigureAwait(false);
            }
            else if (_claims.TryGetValue(key, out var claim))
            {
                await claim.ConfigureAwait(false);
                continue;
            }

            var result = await _inner.ReserveRunAsync(request, cancellationToken).ConfigureAwait(false);
            if (result.Rejection != RedisAdmissionStore.RunOwned)
            {
                if (result.IsAdmitted)
                {
                    MaybeClaim(request.RunId!, key, RedisAdmissionStore.InARowOf(result.Reservation!));
                }

                return result;
            }

            if (_runs.ContainsKey(key) || _claims.ContainsKey(key))
            {
                // This replica's own (a claim just landed, or its block is closing): decided above on the next round.
                RedisAdmissionStore.ThrowIfOwnerTooSlow(request.RunId!, started);
            }
            else
            {
                // Another replica's: it lets go when asked (or its claim runs out).
                await _inner.WaitForRunOwnerAsync(request.RunId!, attempt, started, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The call decided on the block, or null when the block cannot decide it.</summary>
    private AdmissionResult? OnBlock(RunBlock block, AdmissionRequest request)
    {
        var now = NowMs();
        var ttlMs = Math.Max(1, (long)request.ReservationTtl.TotalMilliseconds);
        var usd = UsdAmount.ToNanosCeiling(request.ReserveUsd);
        var tokens = Math.Max(0, request.ReserveTokens);
        var hash = request.RequestHash ?? string.Empty;
        var ask = new RunAsk(now, usd, tokens, hash, UsdAmount.ToNanosFloor(request.RunBudget.Usd), Math.Max(0, request.RunBudget.Tokens),
            Math.Max(0, request.RunBudget.Calls), Math.Max(0, (long)request.RunDeadline.TotalMilliseconds), Math.Max(0, request.RunMaxRepeats),
            Math.Max(0, request.RunMaxInFlight), _inFlightRetryMs);
        RunDecision decision;
        RunBlockCall? call = null;
        lock (block.Gate)
        {
            decision = block.Decide(ask);
            if (decision.Admitted)
            {
                var id = ReservationIds.Format(_idPrefix, Interlocked.Increment(ref _sequence));
                call = new RunBlockCall(block, id, usd, tokens, AdmissionConstants.ExpirySecond(now + ttlMs), now, hash, ttlMs) { Step = decision.Step };
                block.InFlight.Add(call);
                block.User = request.User;
            }
        }

        if (!decision.Decided)
        {
            return null;
        }

        Interlocked.Increment(ref _runLocalDecisions);
        var fractions = new BudgetFractions(0, 0, RunFraction(decision.UsedBefore, request.RunBudget));
        if (call is not null)
        {
            return new AdmissionResult(call, AdmissionRejection.None, AdmissionScope.None, AdmissionLimit.None, 0, null, default, default, fractions);
        }

        var value = decision.Limit switch
        {
            AdmissionLimit.Usd => UsdAmount.ToUsd(decision.Value),
            AdmissionLimit.Deadline => decision.Value / 1000m,
            _ => decision.Value,
        };
        return new AdmissionResult(null, decision.Rejection, AdmissionScope.Run, decision.Limit, value,
            decision.RetryMs >= 0 ? TimeSpan.FromMilliseconds(decision.RetryMs) : null, default, default, fractions);
    }

    /// <summary>
    /// Settles or releases a call's hold in its run: on the block that admitted it while open, per call once the block's
    /// close adopted it; a per-call hold of a run this replica owns is folded into the block's next write-back.
    /// </summary>
    private async ValueTask FinishRunAsync(Reservation run, bool settle, decimal actualUsd, long actualTokens, CancellationToken cancellationToken)
    {
        var usd = settle ? UsdAmount.ToNanosCeiling(actualUsd) : 0;
        var tokens = settle ? Math.Max(0, actualTokens) : 0;
        if (run is not RunBlockCall call)
        {
            if (!_claims.IsEmpty && RedisAdmissionStore.DescribeRunHold(run) is { } hold && _claims.TryGetValue(hold.RunKey, out var claim))
            {
                // A claim of its run is out: whether this hold is then folded into the block or finished per call, the
                // block's view of Redis must count it exactly once.
                await claim.ConfigureAwait(false);
            }

            if (!TryFold(run, settle, usd, tokens))
            {
                await (settle ? _inner.SettleAsync(run, actualUsd, actualTokens, cancellationToken) : _inner.ReleaseAsync(run, cancellationToken)).ConfigureAwait(false);
            }

            return;
        }

        if (!call.TryComplete())
        {
            return;
        }

        TaskCompletionSource<bool>? converting;
        lock (call.Block.Gate)
        {
            converting = call.Converting;
            if (call.Adopted is null && converting is null)
            {
                call.Block.Finish(call, settle, usd, tokens);
                return;
            }
        }

        if (converting is { Task.IsCompleted: false })
        {
            // The close that converts it is not confirmed yet (Redis away): its finish follows the confirmation.
            Observe(FinishAdoptedAsync(call, converting.Task, settle, actualUsd, actualTokens));
            return;
        }

        await FinishAdoptedAsync(call, converting?.Task, settle, actualUsd, actualTokens).ConfigureAwait(false);
    }

    private async Task FinishAdoptedAsync(RunBlockCall call, Task<bool>? converting, bool settle, decimal actualUsd, long actualTokens)
    {
        if (converting is not null && !await converting.ConfigureAwait(false))
        {
            // Given up with its block: never charged (as a leased block's calls when its return is given up).
            return;
        }

        var adopted = call.Adopted!;
        await (settle ? _inner.SettleAsync(adopted, actualUsd, actualTokens) : _inner.ReleaseAsync(adopted)).ConfigureAwait(false);
    }

    /// <summary>A per-call hold of a run this replica owns (open): its finish goes with the block's next write-back.</summary>
    private bool TryFold(Reservation run, bool settle, long usd, long tokens)
    {
        if (_runs.IsEmpty || RedisAdmissionStore.DescribeRunHold(run) is not { } hold || !_runs.TryGetValue(hold.RunKey, out var block))
        {
            return false;
        }

        lock (block.Gate)
        {
            // A hold whose second passed may be gone from Redis already: it goes per call (the script knows).
            if (!block.Open || NowMs() >= hold.ExpirySecond * 1000 || !run.TryComplete())
            {
                return false;
            }

            block.Fold(new RunFoldedFinish(hold.ExpiryField, run.UsdNanos, run.ReservedTokens, usd, tokens, settle, hold.RequestHash));
            return true;
        }
    }

    private void MaybeClaim(string runId, string key, long inARow)
    {
        if (_lease.RunClaimAfter <= 0 || inARow < _lease.RunClaimAfter || _stopped || _runs.ContainsKey(key) || _claims.ContainsKey(key))
        {
            return;
        }

        if (_claimRefusedUntil.TryGetValue(key, out var until) && until > NowMs())
        {
            return;
        }

        var claimed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (_claims.TryAdd(key, claimed.Task))
        {
            Observe(ClaimAsync(runId, key, claimed));
        }
    }

    private async Task ClaimAsync(string runId, string key, TaskCompletionSource claimed)
    {
        var now = NowMs();
        var epoch = Interlocked.Read(ref _connectionEpoch);
        try
        {
            Interlocked.Increment(ref _scripts);
            var call = _redis.EvaluateAsync(RunBlockScripts.Claim, [key, key + "x"],
                [Pack([now, _inner.ReplicaId, RedisAdmissionStore.RunOwnershipMs, RunStepsAhead, _idleMs, _lease.RunClaimAfter])]);
            RedisResult[] reply;
            try
            {
                reply = (RedisResult[])(await call.WaitAsync(_timeout).ConfigureAwait(false))!;
            }
            catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
            {
                RedisConnection.Observe(call);
                // Ran after all: nobody holds the block here, so it is let go at once rather than left to run out.
                RedisConnection.WhenAnswered(call, late => (long)((RedisResult[])late!)[0] == 1 ? LetGoUnheldAsync(key, (long)((RedisResult[])late!)[8]) : Task.CompletedTask);
                _claimRefusedUntil[key] = now + 1_000;
                return;
            }

            if ((long)reply[0] != 1)
            {
                _claimRefusedUntil[key] = now + 1_000;
                return;
            }

            var repeats = new Dictionary<string, long>(StringComparer.Ordinal);
            for (var i = 9; i + 1 < reply.Length; i += 2)
            {
                repeats[(string)reply[i]!] = (long)reply[i + 1];
            }

            var totals = new RunTotals((long)reply[1], (long)reply[2], (long)reply[3], (long)reply[4], (long)reply[5], (long)reply[6]);
            var block = new RunBlock(runId, key, totals, (long)reply[7], (long)reply[8], RunStepsAhead, repeats, now + RedisAdmissionStore.RunOwnershipMs) { LastAdmittedMs = now };
            _runs[key] = block;
            Interlocked.Increment(ref _runClaims);
            _metrics?.RecordRunBlock(claimed: true);
            if (Interlocked.Read(ref _connectionEpoch) != epoch || _stopped)
            {
                // The connection failed while the claim was out: the block must not outlive it.
                Observe(CloseRunAsync(block));
            }
        }
        finally
        {
            _claims.TryRemove(key, out _);
            claimed.SetResult();
        }
    }

    /// <summary>A claim whose reply came too late: its ownership is cleared (nothing was admitted on it).</summary>
    private async Task LetGoUnheldAsync(string key, long steps)
    {
        try
        {
            await EvaluateAsync(RunBlockScripts.Sync, [key, key + "x", MarkerKey(key, NowMs())],
                [Pack([NowMs(), _inner.ReplicaId, 0, 0, 0, 0, steps, 1, RunKeyLife(0), 0, 0, 0, 0, 0, 0, 0]), string.Empty, ReservationIds.Format(_idPrefix, Interlocked.Increment(ref _sequence))]).ConfigureAwait(false);
        }
        catch (AdmissionStoreUnavailableException)
        {
            // Its claim runs out by itself within RunOwnershipMs.
        }
    }

    /// <summary>A lease message naming a run this replica owns: another replica, a halt or a state read asks it to let go.</summary>
    private bool TryLetGo(string control)
    {
        if (!_runs.TryGetValue(control, out var block))
        {
            return false;
        }

        Observe(CloseRunAsync(block));
        return true;
    }

    /// <summary>Closes this replica's block of the run, if it has one, and waits for the write-back.</summary>
    private async ValueTask LetGoOfRunAsync(string runId)
    {
        if (_runs.TryGetValue(_inner.RunKeyOf(runId), out var block))
        {
            await CloseRunAsync(block).ConfigureAwait(false);
        }
    }

    private void CloseAllRuns()
    {
        foreach (var block in _runs.Values)
        {
            Observe(CloseRunAsync(block));
        }
    }

    private long RunKeyLife(long ttlMs) => _inner.RunLifeMs(ttlMs);

    /// <summary>A write-back's marker hash: the run's slot (its hash tag), one per 10 s of first attempts.</summary>
    private static string MarkerKey(string runKey, long nowMs) => runKey + "wb" + (nowMs / 10_000).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static double RunFraction(RunTotals usedBefore, BudgetLimits limits) => RedisAdmissionStore.Fraction([usedBefore.Su, usedBefore.St, usedBefore.Sc], limits);
}
