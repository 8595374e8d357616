namespace LlmGateway.Budgets.Leases;

/// <summary>Spent and held amounts of a run (nano-dollars, tokens, calls), as the run's packed <c>s</c> field has them.</summary>
internal readonly record struct RunTotals(long Su, long St, long Sc, long Ru, long Rt, long Rc)
{
    public RunTotals Plus(RunTotals other) => new(Su + other.Su, St + other.St, Sc + other.Sc, Ru + other.Ru, Rt + other.Rt, Rc + other.Rc);

    public RunTotals Minus(RunTotals other) => new(Su - other.Su, St - other.St, Sc - other.Sc, Ru - other.Ru, Rt - other.Rt, Rc - other.Rc);

    public bool IsZero => this == default;
}

/// <summary>What a call of a run asks of its run: the call's worst case and the run's limits, as the scripts get them.</summary>
internal readonly record struct RunAsk(
    long NowMs, long UsdNanos, long Tokens, string RequestHash, long LimitUsd, long LimitTokens, long LimitCalls,
    long DeadlineMs, long MaxRepeats, long MaxInFlight, long InFlightRetryMs);

/// <summary>A run's answer from its block: admitted at a step, refused, or not decidable here (the call goes per call).</summary>
internal readonly record struct RunDecision(bool Decided, long Step, AdmissionRejection Rejection, AdmissionLimit Limit, long Value, long RetryMs, RunTotals UsedBefore)
{
    public static RunDecision Undecided => default;

    public bool Admitted => Decided && Rejection == AdmissionRejection.None;
}

/// <summary>
/// A run this replica owns (its exclusive block, docs/redis-scale-out.md): the run's state as Redis had it at the
/// claim or last write-back, plus what happened here since, decided by the same rules as the admission scripts'
/// run step (RedisAdmissionScripts.ReserveRun) and the in-memory store — the differential tests hold all three to
/// each other. Every member is read and written under <see cref="Gate"/>.
/// </summary>
internal sealed class RunBlock(string runId, string runKey, RunTotals redis, long startMs, long steps, long stepsAhead, Dictionary<string, long> repeats, long ownedUntilMs)
{
    /// <summary>The owner stops admitting this long before its claim would run out unless written back again.</summary>
    internal const long Margin = 250;

    /// <summary>
    /// Distinct requests the block counts for the loop guard before it lets go (the run then goes per call: a claim
    /// refuses a run hash of over 600 fields). Bounds the block's memory whatever the callers send.
    /// </summary>
    internal const int MaxRepeatHashes = 4096;

    public object Gate { get; } = new();

    public string RunId { get; } = runId;

    public string RunKey { get; } = runKey;

    /// <summary>Admits calls (false once it began to close).</summary>
    public bool Open { get; set; } = true;

    /// <summary>Its close was written back: the run is no longer this replica's, its calls in flight are per-call holds.</summary>
    public bool Closed { get; set; }

    /// <summary>The close (until Redis confirmed it, or it was given up), once it started.</summary>
    public Task<bool>? CloseTask { get; set; }

    /// <summary>Completed when the close's write-back is confirmed (true) or given up (false): the calls it converts wait for it.</summary>
    public TaskCompletionSource<bool>? Converted { get; set; }

    /// <summary>One write-back at a time.</summary>
    public SemaphoreSlim Writing { get; } = new(1, 1);

    /// <summary>A write-back Redis did not confirm: sent again as it was before anything else (its id makes a repeat a no-op).</summary>
    public RunWriteBack? Unconfirmed { get; set; }

    /// <summary>Per-call holds of the run finished on this replica while it owns the run, not yet written back.</summary>
    public List<RunFoldedFinish> Folded { get; set; } = [];

    /// <summary>Until when Redis has the run as this replica's (caller clock).</summary>
    public long OwnedUntilMs { get; set; } = ownedUntilMs;

    /// <summary>The run as Redis had it at the last claim or write-back (per-call holds of other calls included).</summary>
    public RunTotals Redis { get; set; } = redis;

    /// <summary>Settled here, not yet written back.</summary>
    public RunTotals Pending { get; set; }

    /// <summary>Settled here and in the write-back in flight.</summary>
    public RunTotals Sending { get; set; }

    /// <summary>Held by this replica's calls in flight on the block.</summary>
    public RunTotals Held { get; set; }

    public long StartMs { get; } = startMs;

    /// <summary>The run's last step given.</summary>
    public long Steps { get; set; } = steps;

    /// <summary>Steps up to this are reserved in Redis for this owner.</summary>
    public long StepsReserved { get; set; } = steps + stepsAhead;

    /// <summary>The loop guard's admissions per request hash (Redis's at the claim, plus this replica's since).</summary>
    public Dictionary<string, long> Repeats { get; } = repeats;

    /// <summary>Changes of <see cref="Repeats"/> not yet written back.</summary>
    public Dictionary<string, long> RepeatChanges { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Changes of <see cref="Repeats"/> in the write-back in flight.</summary>
    public Dictionary<string, long>? RepeatsSending { get; set; }

    public HashSet<RunBlockCall> InFlight { get; } = [];

    /// <summary>The latest admitted call's user and limits (the run hash keeps them for GET /admin/runs).</summary>
    public string? User { get; set; }

    public (long Usd, long Tokens, long Calls)? Limits { get; set; }

    public long LastAdmittedMs { get; set; }

    /// <summary>When it began to close (caller clock; 0 while open): a close Redis never confirms is given up after a minute.</summary>
    public long ClosingSinceMs { get; set; }

    /// <summary>Everything the run has used: Redis's figures, what settled here since, and what is held here.</summary>
    public RunTotals Used => Redis.Plus(Sending).Plus(Pending).Plus(Held);

    /// <summary>
    /// The run step's checks in the scripts' order — halt (the block closes on one), deadline, loop guard, budget,
    /// in-flight cap — and, admitted, the call's hold and step.
    /// </summary>
    public RunDecision Decide(in RunAsk ask)
    {
        if (!Open || ask.NowMs >= OwnedUntilMs - Margin || Steps >= StepsReserved || Repeats.Count >= MaxRepeatHashes)
        {
            return RunDecision.Undecided;
        }

        var used = Used;
        var before = used with { Su = used.Su + used.Ru, St = used.St + used.Rt, Sc = used.Sc + used.Rc };
        if (ask.DeadlineMs > 0 && StartMs >= 0 && ask.NowMs >= StartMs + ask.DeadlineMs)
        {
            return Refuse(AdmissionRejection.RunDeadlineExceeded, AdmissionLimit.Deadline, ask.DeadlineMs, -1, before);
        }

        var repeats = ask.RequestHash.Length > 0 && Repeats.TryGetValue(ask.RequestHash, out var seen) ? seen : 0;
        if (ask.MaxRepeats > 0 && ask.RequestHash.Length > 0 && repeats + 1 > ask.MaxRepeats)
        {
            return Refuse(AdmissionRejection.LoopDetected, AdmissionLimit.Repeats, ask.MaxRepeats, -1, before);
        }

        if (ask.LimitUsd > 0 && ask.UsdNanos > 0 && used.Su + used.Ru + ask.UsdNanos > ask.LimitUsd)
        {
            return Refuse(AdmissionRejection.BudgetExceeded, AdmissionLimit.Usd, ask.LimitUsd, -1, before);
        }

        if (ask.LimitTokens > 0 && ask.Tokens > 0 && used.St + used.Rt + ask.Tokens > ask.LimitTokens)
        {
            return Refuse(AdmissionRejection.BudgetExceeded, AdmissionLimit.Tokens, ask.LimitTokens, -1, before);
        }

        if (ask.LimitCalls > 0 && used.Sc + used.Rc + 1 > ask.LimitCalls)
        {
            return Refuse(AdmissionRejection.BudgetExceeded, AdmissionLimit.Calls, ask.LimitCalls, -1, before);
        }

        if (ask.MaxInFlight > 0 && used.Rc + 1 > ask.MaxInFlight)
        {
            return Refuse(AdmissionRejection.RateLimitExceeded, AdmissionLimit.InFlight, ask.MaxInFlight, ask.InFlightRetryMs, before);
        }

        Held = Held with { Ru = Held.Ru + ask.UsdNanos, Rt = Held.Rt + ask.Tokens, Rc = Held.Rc + 1 };
        if (ask.RequestHash.Length > 0)
        {
            Repeats[ask.RequestHash] = repeats + 1;
            RepeatChanges[ask.RequestHash] = RepeatChanges.GetValueOrDefault(ask.RequestHash) + 1;
        }

        Steps++;
        Limits = (ask.LimitUsd, ask.LimitTokens, ask.LimitCalls);
        LastAdmittedMs = ask.NowMs;
        return new RunDecision(true, Steps, AdmissionRejection.None, AdmissionLimit.None, 0, -1, before);
    }

    /// <summary>A call admitted here finished: settled (charge what it cost) or released (it never happened).</summary>
    public void Finish(RunBlockCall call, bool settle, long usdNanos, long tokens)
    {
        InFlight.Remove(call);
        Held = Held with { Ru = Held.Ru - call.UsdNanos, Rt = Held.Rt - call.ReservedTokens, Rc = Held.Rc - 1 };
        if (settle)
        {
            Pending = Pending with { Su = Pending.Su + usdNanos, St = Pending.St + tokens, Sc = Pending.Sc + 1 };
        }
        else if (call.RequestHash.Length > 0 && Repeats.TryGetValue(call.RequestHash, out var seen))
        {
            // As the finish script: a call that never happened does not count as a repeat either.
            Repeats[call.RequestHash] = seen - 1;
            RepeatChanges[call.RequestHash] = RepeatChanges.GetValueOrDefault(call.RequestHash) - 1;
        }
    }

    /// <summary>
    /// A per-call hold of the run (admitted before the claim) finished here while the block is open: written back with
    /// the block's next write-back, as the finish script would apply it, and seen by the block's decisions at once.
    /// </summary>
    public void Fold(RunFoldedFinish finish)
    {
        Folded.Add(finish);
        Pending = Pending with
        {
            Su = Pending.Su + (finish.Settle ? finish.CostUsd : 0),
            St = Pending.St + (finish.Settle ? finish.CostTokens : 0),
            Sc = Pending.Sc + (finish.Settle ? 1 : 0),
            Ru = Pending.Ru - finish.HeldUsd,
            Rt = Pending.Rt - finish.HeldTokens,
            Rc = Pending.Rc - 1,
        };
        if (!finish.Settle && finish.RequestHash.Length > 0 && Repeats.TryGetValue(finish.RequestHash, out var seen))
        {
            Repeats[finish.RequestHash] = seen - 1;
        }
    }

    private static RunDecision Refuse(AdmissionRejection rejection, AdmissionLimit limit, long value, long retryMs, RunTotals usedBefore) =>
        new(true, 0, rejection, limit, value, retryMs, usedBefore);
}

/// <summary>A per-call hold's settlement or release, folded into a run block's write-back.</summary>
internal sealed record RunFoldedFinish(string ExpiryField, long HeldUsd, long HeldTokens, long CostUsd, long CostTokens, bool Settle, string RequestHash);

/// <summary>
/// One write-back as sent: its id and marker hash (one per run and 10 s, living 90 s: a repeat within the retry window
/// finds its id, and an owned run's markers do not pile up), arguments, the spend it carries, and for a close the
/// calls it converts.
/// </summary>
internal sealed record RunWriteBack(string Id, string MarkerKey, StackExchange.Redis.RedisValue[] Args, RunTotals Sending, bool Close, RunBlockCall[] Calls, long Steps, long NowMs);

/// <summary>
/// A call's hold in a run this replica owns. Settled or released on the block while the block is open; once the
/// block's close wrote it to Redis as a per-call hold, through <see cref="Adopted"/>, per call.
/// </summary>
internal sealed class RunBlockCall(RunBlock block, string id, long usdNanos, long tokens, long expirySecond, long admittedMs, string requestHash, long ttlMs)
    : Reservation(id, usdNanos, tokens, expirySecond * 1000)
{
    public RunBlock Block { get; } = block;

    public long ExpirySecond { get; } = expirySecond;

    public long AdmittedMs { get; } = admittedMs;

    public string RequestHash { get; } = requestHash;

    public long TtlMs { get; } = ttlMs;

    /// <summary>The per-call hold the block's close made of this call (under the block's gate).</summary>
    public Reservation? Adopted { get; set; }

    /// <summary>In a close's write-back (under the block's gate): its finish waits for the close to be confirmed.</summary>
    public TaskCompletionSource<bool>? Converting { get; set; }
}
