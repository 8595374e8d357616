using LlmGateway.Configuration;

namespace LlmGateway.Budgets;

/// <summary>The counters and state the store keeps per user, team, run and reservation.</summary>
internal sealed partial class InMemoryAdmissionStore
{
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
        /// <summary>
        /// Distinct requests whose repeats one run counts for the loop guard. Past it, the quarter seen least recently is
        /// forgotten: a loop repeats a request it sent recently, so it stays counted; a forgotten request only restarts its
        /// count (the guard is not a spend limit: budgets, calls and deadline are counted apart and never forgotten).
        /// </summary>
        internal const int MaxRepeatHashes = 64;

        // Keyed by a 64-bit hash of the request hash: a Base64 SHA-256 string would cost ~110 bytes an entry. Two requests
        // colliding would only be counted as one, which refuses earlier, never later.
        private Dictionary<ulong, (int Count, long Seen)>? _repeats;
        private long _seen;

        public BudgetCounter Budget { get; } = new(BudgetPeriod.Total, 0, BudgetPeriods.TotalKey, 0);

        public long StartMs { get; set; } = -1;

        public long LastActivityMs { get; set; }

        public long DeadlineMs { get; set; }

        /// <summary>Calls admitted (LLM and tool): the last one's step.</summary>
        public long Steps { get; set; }

        public bool Halted { get; set; }

        public string? User { get; set; }

        /// <summary>Distinct requests counted now (tests).</summary>
        public int RepeatHashes => _repeats?.Count ?? 0;

        /// <summary>How often the request was admitted in this run; a request asked about counts as seen now (a loop refused over and over stays counted).</summary>
        public int Repeats(string hash)
        {
            var key = Key(hash);
            if (_repeats is null || !_repeats.TryGetValue(key, out var entry))
            {
                return 0;
            }

            _repeats[key] = (entry.Count, ++_seen);
            return entry.Count;
        }

        public void AddRepeat(string hash)
        {
            _repeats ??= [];
            var key = Key(hash);
            if (_repeats.TryGetValue(key, out var entry))
            {
                _repeats[key] = (entry.Count + 1, ++_seen);
                return;
            }

            if (_repeats.Count >= MaxRepeatHashes)
            {
                ForgetOldest();
            }

            _repeats[key] = (1, ++_seen);
        }

        public void RemoveRepeat(string hash)
        {
            var key = Key(hash);
            if (_repeats is null || !_repeats.TryGetValue(key, out var entry))
            {
                return;
            }

            if (entry.Count > 1)
            {
                _repeats[key] = (entry.Count - 1, entry.Seen);
            }
            else
            {
                _repeats.Remove(key);
            }
        }

        /// <summary>FNV-1a over the characters.</summary>
        private static ulong Key(string hash)
        {
            var key = 14695981039346656037UL;
            foreach (var c in hash)
            {
                key = (key ^ c) * 1099511628211UL;
            }

            return key;
        }

        private void ForgetOldest()
        {
            Span<long> seen = stackalloc long[_repeats!.Count];
            var i = 0;
            foreach (var entry in _repeats.Values)
            {
                seen[i++] = entry.Seen;
            }

            seen.Sort();
            var below = seen[Math.Max(1, MaxRepeatHashes / 4) - 1];
            foreach (var (key, entry) in _repeats)
            {
                if (entry.Seen <= below)
                {
                    _repeats.Remove(key);
                }
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
