namespace LlmGateway.Budgets;

/// <summary>
/// In-memory rate window of one subject (a user or a key): the calls and tokens admitted in each of the last 61
/// seconds. The Redis store keeps the same counters in a hash (see <see cref="RedisAdmissionScripts"/>).
/// </summary>
/// <remarks>
/// A call counts from its admission until the end of its second plus 60 s (<see cref="AdmissionConstants.LeavesWindowMs"/>),
/// so no 60 s span ever holds more than the limit (a fixed window admits 2N across a boundary; GCRA admits a burst
/// of N and then refills, nearly 2N in one window), and a slot frees at most 1 s after an exact sliding log would
/// free it. Memory is 61 seconds of counters whatever the rate: the exact log it replaces kept one entry per call,
/// a million objects per user at 18k req/s, and its garbage made CPU per request grow with load. Settlement
/// corrects the tokens of the call's second while that second is in the window; Retry-After is when the oldest
/// seconds whose leaving makes room leave. Not thread-safe: the store's lock guards it.
/// </remarks>
internal sealed class RateWindow
{
    private const int Slots = AdmissionConstants.WindowSeconds;

    private readonly long[] _second = new long[Slots];
    private readonly long[] _calls = new long[Slots];
    private readonly long[] _tokens = new long[Slots];

    public RateWindow() => Array.Fill(_second, long.MinValue);

    /// <summary>Live calls in the window.</summary>
    public long Requests { get; private set; }

    /// <summary>Tokens of the live calls in the window: reserved, then corrected at settlement.</summary>
    public long Tokens { get; private set; }

    /// <summary>The oldest second holding calls (as of the last eviction), or null when the window is empty.</summary>
    public long? Oldest { get; private set; }

    /// <summary>Takes out the seconds that have left the window by <paramref name="nowSecond"/> and finds the new oldest.</summary>
    public void Purge(long nowSecond)
    {
        if (Oldest is not { } oldest || oldest > nowSecond - Slots)
        {
            return;
        }

        long? next = null;
        for (var second = oldest; second <= oldest + Slots - 1; second++)
        {
            var slot = Slot(second);
            if (_second[slot] != second)
            {
                continue;
            }

            if (second <= nowSecond - Slots)
            {
                Requests -= _calls[slot];
                Tokens -= _tokens[slot];
                Clear(slot);
            }
            else if (next is null && _calls[slot] > 0)
            {
                next = second;
            }
        }

        Oldest = next;
        if (next is null)
        {
            Requests = 0;
            Tokens = 0;
        }
    }

    public void Add(long nowSecond, long tokens)
    {
        var slot = Slot(nowSecond);
        if (_second[slot] != nowSecond)
        {
            Clear(slot);
            _second[slot] = nowSecond;
        }

        _calls[slot]++;
        _tokens[slot] += tokens;
        Requests++;
        Tokens += tokens;
        Oldest ??= nowSecond;
    }

    /// <summary>Replaces a call's reserved tokens by the tokens it used, while its second is in the window.</summary>
    public void Correct(long second, long reserved, long used)
    {
        if (Holds(second, out var slot))
        {
            _tokens[slot] += used - reserved;
            Tokens += used - reserved;
        }
    }

    /// <summary>Takes a call out of the window (released: it never happened), while its second is in the window.</summary>
    public void Remove(long second, long reserved)
    {
        if (Holds(second, out var slot))
        {
            Requests--;
            Tokens -= reserved;
            if (Requests == 0)
            {
                // An empty window has no oldest second (x-ratelimit-reset 0), as on Redis Cluster after an undone hold.
                Oldest = null;
            }

            if (_calls[slot] <= 1)
            {
                Clear(slot);
            }
            else
            {
                _calls[slot]--;
                _tokens[slot] -= reserved;
            }
        }
    }

    /// <summary>
    /// When the oldest seconds, leaving the window, free at least <paramref name="need"/> calls (or tokens when
    /// <paramref name="tokens"/>); -1 if they never do.
    /// </summary>
    public long FreeingMs(long need, bool tokens, long nowSecond)
    {
        if (Oldest is not { } oldest)
        {
            return -1;
        }

        long freed = 0;
        for (var second = oldest; second <= nowSecond; second++)
        {
            var slot = Slot(second);
            if (_second[slot] == second)
            {
                freed += tokens ? _tokens[slot] : _calls[slot];
            }

            if (freed >= need)
            {
                return AdmissionConstants.LeavesWindowMs(second);
            }
        }

        return -1;
    }

    /// <summary>Time until the oldest second's calls leave the window (the x-ratelimit-reset value).</summary>
    public long ResetMs(long nowMs) => Oldest is { } oldest ? AdmissionConstants.LeavesWindowMs(oldest) - nowMs : 0;

    private static int Slot(long second) => (int)(second % Slots);

    private bool Holds(long second, out int slot)
    {
        slot = Slot(second);
        return Oldest is { } oldest && oldest <= second && _second[slot] == second;
    }

    private void Clear(int slot)
    {
        _second[slot] = long.MinValue;
        _calls[slot] = 0;
        _tokens[slot] = 0;
    }
}
