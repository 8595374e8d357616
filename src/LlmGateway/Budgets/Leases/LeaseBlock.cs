namespace LlmGateway.Budgets.Leases;

/// <summary>USD (nano-dollars), tokens and calls: what a block was granted, holds, or has used.</summary>
internal record struct LeaseAmounts(long Usd, long Tokens, long Calls)
{
    public static LeaseAmounts operator +(LeaseAmounts a, LeaseAmounts b) => new(a.Usd + b.Usd, a.Tokens + b.Tokens, a.Calls + b.Calls);

    public static LeaseAmounts operator -(LeaseAmounts a, LeaseAmounts b) => new(a.Usd - b.Usd, a.Tokens - b.Tokens, a.Calls - b.Calls);

    public readonly bool IsZero => Usd == 0 && Tokens == 0 && Calls == 0;

    /// <summary>True when every amount of this fits within <paramref name="room"/>.</summary>
    public readonly bool FitsIn(LeaseAmounts room) => Usd <= room.Usd && Tokens <= room.Tokens && Calls <= room.Calls;
}

/// <summary>The limits a block was granted under (nano-dollars, tokens, calls); a call with other limits takes a new block.</summary>
internal readonly record struct LeaseLimits(long Usd, long Tokens, long Calls);

/// <summary>What a scope's blocks hold in Redis.</summary>
internal enum LeaseKind
{
    /// <summary>A user's or team's period budget: USD, tokens and calls reserved in its <c>s</c> field.</summary>
    Budget,

    /// <summary>A user's or key's RPM/TPM window: calls and tokens counted in one second's <c>w{s}</c> counter.</summary>
    Rate,

    /// <summary>A user's in-flight cap: slots counted in the user's in-flight counter.</summary>
    InFlight,
}

/// <summary>
/// One scope on this replica (a user's or team's budget in one period, a user's or key's rate window, a user's
/// in-flight cap): its open block and the closed blocks still draining. Every field is guarded by <see cref="Gate"/>.
/// </summary>
internal sealed class LeaseScope(string control, string budget, string reservations, bool isUser, LlmGateway.Configuration.BudgetPeriod period, long periodId, long periodEndMs, LeaseKind kind = LeaseKind.Budget)
{
    public LeaseKind Kind { get; } = kind;

    /// <summary>The scope's name on this replica (kind and hash: a user's rate and in-flight scopes share one hash).</summary>
    public string Id { get; } = kind + ":" + budget;

    public LlmGateway.Configuration.BudgetPeriod Period { get; } = period;

    public long PeriodId { get; } = periodId;

    public Lock Gate { get; } = new();

    /// <summary>The hash holding the scope's lease version (and, for a user, the halt flag).</summary>
    public string Control { get; } = control;

    /// <summary>The hash the blocks are held in: the budget hash, or the user's (key's) own hash for rates and in flight.</summary>
    public string Budget { get; } = budget;

    /// <summary>The sorted set of the hash's pending expiry seconds (budgets, in flight).</summary>
    public string Reservations { get; } = reservations;

    public bool IsUser { get; } = isUser;

    public long PeriodEndMs { get; } = periodEndMs;

    /// <summary>The block new calls are admitted on; null when there is none.</summary>
    public LeaseBlock? Open { get; set; }

    /// <summary>Blocks that admit no more calls and go back to Redis as their calls finish.</summary>
    public List<LeaseBlock> Closed { get; } = [];

    /// <summary>The newest lease version seen (grant replies, pub/sub, this replica's own halts).</summary>
    public long KnownVersion { get; set; }

    /// <summary>How many calls the next block asks for: twice what the last block served, within the options' bounds.</summary>
    public long WantCalls { get; set; }

    /// <summary>A grant in flight; calls needing a block meanwhile wait for it rather than send their own.</summary>
    public Task<bool>? Granting { get; set; }
}

/// <summary>
/// A block: room taken from a scope in Redis (<see cref="Granted"/>, held there like that many reservations) that this
/// replica admits calls against without Redis. Invariant: <c>Held + Used ≤ Granted</c> while it admits, so what the
/// replica's calls hold and spent never passes what Redis set aside for them. Guarded by its scope's gate.
/// </summary>
internal sealed class LeaseBlock(LeaseScope scope, LeaseAmounts granted, long expirySecond, string expiryField, long openUntilMs, long version, LeaseLimits limits, LeaseAmounts usedAtGrant)
{
    public LeaseScope Scope { get; } = scope;

    /// <summary>What Redis still holds for this block.</summary>
    public LeaseAmounts Granted { get; set; } = granted;

    /// <summary>The worst cases of its calls in flight.</summary>
    public LeaseAmounts Held { get; set; }

    /// <summary>What its settled calls cost, not yet charged in Redis.</summary>
    public LeaseAmounts Used { get; set; }

    /// <summary>What its settled calls cost and was charged in Redis while it was open (see ChargeAsync).</summary>
    public LeaseAmounts Charged { get; set; }

    /// <summary>
    /// Redis gives the block back by itself at this second (its replica died): no call may hold past it. A rate block's
    /// is the second whose window counter holds it.
    /// </summary>
    public long ExpirySecond { get; } = expirySecond;

    public string ExpiryField { get; } = expiryField;

    /// <summary>No new call is admitted on the block after this instant (caller's clock).</summary>
    public long OpenUntilMs { get; } = openUntilMs;

    public long Version { get; } = version;

    public LeaseLimits Limits { get; } = limits;

    /// <summary>The scope's spent plus reserved (every replica) when the block was granted, for the budget fractions.</summary>
    public LeaseAmounts UsedAtGrant { get; } = usedAtGrant;

    /// <summary>A rate block: its window's oldest second at the grant (-1 none), for the x-ratelimit reset.</summary>
    public long Oldest { get; init; } = -1;

    /// <summary>Calls admitted on it, for sizing the next block.</summary>
    public long Admitted { get; set; }

    public bool IsClosed { get; set; }
}

/// <summary>A call's hold on one block: what it took there (its worst case in that block's amounts).</summary>
internal readonly record struct LeaseHold(LeaseBlock Block, LeaseAmounts Need);

/// <summary>
/// A call admitted on blocks: the user's budget's and, as its limits ask, the team's, rate windows' and in-flight
/// cap's; with its run's own per-call hold when it belongs to one.
/// </summary>
internal sealed class LeasedReservation(LeasedAdmissionStore store, string idPrefix, long sequence, LeaseAmounts held, long expiresAtMs, LeaseHold[] holds)
    : Reservation(held.Usd, held.Tokens, expiresAtMs)
{
    public LeasedAdmissionStore Store { get; } = store;

    public LeaseHold[] Holds { get; } = holds;

    /// <summary>A call of a run: its hold in the run, decided per call (the run is not leased).</summary>
    public Reservation? Run { get; set; }

    private protected override string FormatId() => ReservationIds.Format(idPrefix, sequence);
}
