namespace LlmGateway.Budgets;

/// <summary>
/// Decides whether a call may go upstream and holds its worst-case cost until it is settled: budgets (user,
/// team, run), rate limits (RPM/TPM per user and per key), in-flight caps, run deadlines, loop guard and halts,
/// all checked and reserved in one atomic step. Implementations: <see cref="InMemoryAdmissionStore"/> (one
/// process) and <see cref="RedisAdmissionStore"/> (shared by every replica); both have the same semantics.
/// </summary>
/// <remarks>
/// Every admitted reservation must end with exactly one <see cref="SettleAsync"/> (the call happened: charge
/// what it cost) or <see cref="ReleaseAsync"/> (it never happened: undo everything); the first wins and later
/// calls are no-ops, so "settle on success, release in finally" is safe. A reservation neither settled nor
/// released expires after its TTL and gives its budget and in-flight slot back by itself.
/// Store failures surface as <see cref="AdmissionStoreUnavailableException"/>, always within a bounded time. A settle
/// or release that fails still completes the reservation for its caller (who logs it): the Redis store retries it in
/// the background for a bounded time, each finish marked so that a repeat of one that ran is a no-op; one never
/// completed leaves its hold to expire by itself, uncharged.
/// </remarks>
public interface IAdmissionStore
{
    /// <summary>Checks every limit that applies and, if all fit, reserves the request's worst case against them.</summary>
    ValueTask<AdmissionResult> ReserveAsync(AdmissionRequest request, CancellationToken cancellationToken = default);

    /// <summary>Replaces the reservation by what the call actually cost and frees its in-flight slot.</summary>
    ValueTask SettleAsync(Reservation reservation, decimal actualUsd, long actualTokens, CancellationToken cancellationToken = default);

    /// <summary>Undoes the reservation entirely: the call did not happen (budget, call count, rate limit, repeat count).</summary>
    ValueTask ReleaseAsync(Reservation reservation, CancellationToken cancellationToken = default);

    /// <summary>Halts a run on every replica: its next admissions get <c>run_halted</c>.</summary>
    ValueTask HaltRunAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Lifts a run halt.</summary>
    ValueTask ResumeRunAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Halts a user on every replica: their next admissions get <c>user_halted</c>.</summary>
    ValueTask HaltUserAsync(string user, CancellationToken cancellationToken = default);

    /// <summary>Lifts a user halt.</summary>
    ValueTask ResumeUserAsync(string user, CancellationToken cancellationToken = default);

    /// <summary>The run's spend, reservations and control state; null when the run is unknown or idle-expired.</summary>
    ValueTask<RunBudgetState?> GetRunStateAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>The user's spend in one budget period (<see cref="BudgetPeriods.GetKey"/>) and their control state.</summary>
    ValueTask<UserBudgetState> GetUserStateAsync(string user, string periodKey, CancellationToken cancellationToken = default);

    /// <summary>True when the store can answer now (readiness); never throws, bounded by the operation timeout.</summary>
    ValueTask<bool> PingAsync(CancellationToken cancellationToken = default);
}
