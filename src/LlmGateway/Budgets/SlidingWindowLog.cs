namespace LlmGateway.Budgets;

/// <summary>
/// In-memory sliding-window log of one rate-limit subject (a user or a key): every admitted call of the last
/// 60 s with its tokens. The Redis store keeps the same log in a sorted set.
/// </summary>
/// <remarks>
/// Why a sliding log rather than GCRA or a sliding-window counter: it is exact — at most N requests and T tokens in
/// any 60 s window (a fixed window admits 2N across a boundary; GCRA, a leaky bucket, admits a burst of N and then
/// refills continuously, so nearly 2N in one window; the two-window counter estimates). Each call's tokens are
/// its own entry, so settlement corrects exactly that call's reserved tokens while it is in the window, and
/// "remaining" goes down by the tokens actually used. Retry-After is exact too: when the oldest entries whose
/// leaving makes room are 60 s old. The price is memory per subject proportional to its calls in the last minute
/// (at most the RPM limit when one is set), which for configured users and keys is small.
/// Not thread-safe: the store's lock guards it.
/// </remarks>
internal sealed class SlidingWindowLog
{
    private WindowEntry?[] _ring = new WindowEntry?[4];
    private int _head;
    private int _size;

    /// <summary>Live calls in the window.</summary>
    public int Requests { get; private set; }

    /// <summary>Tokens of the live calls in the window: reserved, then corrected at settlement.</summary>
    public long Tokens { get; private set; }

    public long LastAddMs { get; private set; }

    /// <summary>Drops entries at or before <paramref name="cutoffMs"/> (now − window).</summary>
    public void Purge(long cutoffMs)
    {
        while (_size > 0)
        {
            var entry = _ring[_head]!;
            if (entry.TimeMs > cutoffMs)
            {
                return;
            }

            Remove(entry);
            _ring[_head] = null;
            _head = (_head + 1) % _ring.Length;
            _size--;
        }
    }

    public WindowEntry Add(long nowMs, long tokens)
    {
        if (_size == _ring.Length)
        {
            var bigger = new WindowEntry?[_ring.Length * 2];
            for (var i = 0; i < _size; i++)
            {
                bigger[i] = _ring[(_head + i) % _ring.Length];
            }

            _ring = bigger;
            _head = 0;
        }

        var entry = new WindowEntry(nowMs, tokens);
        _ring[(_head + _size) % _ring.Length] = entry;
        _size++;
        Requests++;
        Tokens += tokens;
        LastAddMs = nowMs;
        return entry;
    }

    /// <summary>Takes a call out of the window (released: it never happened). Entries already aged out are ignored.</summary>
    public void Remove(WindowEntry entry)
    {
        if (entry.Live)
        {
            entry.Live = false;
            Requests--;
            Tokens -= entry.Tokens;
        }
    }

    /// <summary>Replaces a call's reserved tokens by the tokens it used, while it is still in the window.</summary>
    public void Correct(WindowEntry entry, long tokens)
    {
        if (entry.Live)
        {
            Tokens += tokens - entry.Tokens;
            entry.Tokens = tokens;
        }
    }

    /// <summary>Time of the <paramref name="n"/>-th oldest live call (1-based), or -1.</summary>
    public long NthOldestMs(int n)
    {
        for (var i = 0; i < _size; i++)
        {
            var entry = _ring[(_head + i) % _ring.Length]!;
            if (entry.Live && --n <= 0)
            {
                return entry.TimeMs;
            }
        }

        return -1;
    }

    /// <summary>Time of the live call whose leaving the window frees at least <paramref name="tokens"/> tokens, or -1.</summary>
    public long TimeFreeingMs(long tokens)
    {
        long freed = 0;
        for (var i = 0; i < _size; i++)
        {
            var entry = _ring[(_head + i) % _ring.Length]!;
            if (entry.Live)
            {
                freed += entry.Tokens;
                if (freed >= tokens)
                {
                    return entry.TimeMs;
                }
            }
        }

        return -1;
    }
}

/// <summary>One admitted call in a <see cref="SlidingWindowLog"/>.</summary>
internal sealed class WindowEntry(long timeMs, long tokens)
{
    public long TimeMs { get; } = timeMs;

    public long Tokens { get; set; } = tokens;

    /// <summary>False once released or aged out.</summary>
    public bool Live { get; set; } = true;
}
