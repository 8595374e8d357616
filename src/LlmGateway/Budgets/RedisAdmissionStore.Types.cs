using LlmGateway.Configuration;
using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>Key names and the records a <see cref="RedisAdmissionStore"/> keeps per call.</summary>
internal sealed partial class RedisAdmissionStore
{
    /// <summary>A run's hash (its zset of pending seconds is this name plus <c>x</c>): one hash slot per run.</summary>
    private string RunKey(string runId) => _prefix + "{r:" + runId + "}";

    /// <summary>
    /// The keys of one user, team or gateway key, built once; budget keys are cached for the current period. Every key
    /// of a subject starts with the hash tag <c>{u:name}</c> (<c>{t:…}</c>, <c>{k:…}</c>), so on Redis Cluster a
    /// subject's keys share one slot and each scope's script touches one slot only.
    /// </summary>
    private sealed class SubjectKeys(string prefix, string tag, string name)
    {
        private PeriodKeys? _period;

        /// <summary>The subject's own hash: a user's halt, in-flight count and rate window; a gateway key's rate window.</summary>
        public string Control { get; } = prefix + "{" + tag + ":" + name + "}";

        /// <summary>The seconds at which the user's held reservations expire (in-flight slots).</summary>
        public string InFlight { get; } = prefix + "{" + tag + ":" + name + "}x";

        /// <summary>A gateway key's rate window (a user's lives in <see cref="Control"/>).</summary>
        public string RateWindow => Control;

        public string BudgetKey(string periodKey) => Control + "b:" + periodKey;

        public string ReservationsKey(string periodKey) => Control + "bx:" + periodKey;

        public PeriodKeys GetPeriod(BudgetPeriod period, long nowMs)
        {
            var id = BudgetPeriods.GetId(period, nowMs);
            var current = Volatile.Read(ref _period);
            if (current is not null && current.Period == period && current.Id == id)
            {
                return current;
            }

            var instant = DateTimeOffset.FromUnixTimeMilliseconds(nowMs);
            var key = BudgetPeriods.GetKey(period, instant);
            var created = new PeriodKeys(period, id, BudgetKey(key), ReservationsKey(key), BudgetPeriods.GetEnd(period, instant)?.ToUnixTimeMilliseconds() ?? 0);
            Volatile.Write(ref _period, created);
            return created;
        }
    }

    /// <summary>An admission, settlement or release waiting for its batch: its reservation (keys, fields) and numbers.</summary>
    private sealed class PendingCall(RedisReservation held, byte[] numbers, string? user) : ScriptGroupCommit<PendingCall>.Call
    {
        /// <summary>The reservation the call makes (admissions: used only if admitted) or finishes.</summary>
        public RedisReservation Held { get; } = held;

        public byte[] Numbers { get; } = numbers;

        /// <summary>The user (admissions only).</summary>
        public string? User { get; } = user;

        /// <summary>On a cluster: why a scope of this call could not be decided (its other scopes were given back).</summary>
        public Exception? Failure { get; set; }

        /// <summary>Finishes: the suffix of its marker hashes' names (see RedisAdmissionStore.Retries.cs), the same on every retry.</summary>
        public string? Marker { get; init; }

        /// <summary>
        /// An admission decided in scope steps (a cluster, or run-only): its answer in Reserve's layout, set by its
        /// sender, which then answers the whole batch with <see cref="NoBatchReply"/>.
        /// </summary>
        public long[]? Answer { get; set; }

        /// <summary>A run-only call's settlement, release or undo (<see cref="SendRunStepsAsync"/>); false: its admission.</summary>
        public bool IsFinish { get; init; }

        /// <summary>On a cluster: refused once by a limit and tried again after the batch's undo.</summary>
        public bool Retried { get; set; }

        /// <summary>An admitted run step: the run's admissions in a row by this replica (see RunBlockScripts).</summary>
        public long InARow { get; set; }
    }

    private sealed record FieldNameCache(long Second, string Name);

    private sealed record PeriodKeys(BudgetPeriod Period, long Id, string Budget, string Reservations, long EndMs);

    private sealed class RedisReservation(RedisAdmissionStore store, string id, long usdNanos, long tokens, long expiresAtMs, RedisKey[] keys)
        : Reservation(id, usdNanos, tokens, expiresAtMs)
    {
        public RedisAdmissionStore Store { get; } = store;

        /// <summary>When the call was admitted (caller's clock): a run it started has this start.</summary>
        public long AdmittedMs { get; init; }

        /// <summary>The keys of the admission, reused by settle and release: same scopes, same period.</summary>
        public RedisKey[] Keys { get; } = keys;

        /// <summary>The second whose held amounts include this reservation's (see the scripts' data layout).</summary>
        public long ExpirySecond { get; init; }

        /// <summary>The second of the rate windows that counts the call.</summary>
        public long AdmissionSecond { get; init; }

        public required string RequestHash { get; init; }

        /// <summary>The hash field of <see cref="ExpirySecond"/> (<c>x{second}</c>): the scripts take names, not numbers to format.</summary>
        public required string ExpiryField { get; init; }

        /// <summary>The rate windows' field of <see cref="AdmissionSecond"/> (<c>w{second}</c>).</summary>
        public required string WindowField { get; init; }

        public bool HasTeam { get; init; }

        public bool HasRun { get; init; }

        public bool HasUserRate { get; init; }

        public bool HasKeyRate { get; init; }

        public long UserPeriodEndMs { get; init; }

        public long TeamPeriodEndMs { get; init; }

        public long RunLifeMs { get; init; }

        /// <summary>Made by <see cref="ReserveRunAsync"/>: it holds in the run only.</summary>
        public bool RunOnly { get; init; }

        /// <summary>A run-only admission: the run's admissions in a row by this replica, this one included.</summary>
        public long InARow { get; set; }
    }
}
