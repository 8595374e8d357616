namespace LlmGateway.Resilience;

/// <summary>
/// Retries each run has taken (Gateway:Resilience:MaxRetriesPerRun), for at most <see cref="MaxRuns"/> runs at once.
/// </summary>
/// <remarks>
/// Caller input decides how many runs there are (any X-Run-Id), so the map is bounded: when it is full, the tenth of
/// the runs least recently retried is forgotten. Forgetting is safe here: a forgotten run that fails again starts a
/// fresh retry count, which can cost the provider a few more attempts (still within the gateway-wide retry budget)
/// but never spend: a retry is only made for an attempt that produced nothing, and every call's spend is reserved and
/// limited by the admission store. Runs idle for <see cref="IdleExpiry"/> go first. One lock: retries are rare (only
/// after a failed attempt), and eviction sorts the map once per tenth of it.
/// </remarks>
internal sealed class RunRetryBudgets(TimeProvider time, int maxRuns = RunRetryBudgets.DefaultMaxRuns)
{
    public const int DefaultMaxRuns = 50_000;
    public static readonly TimeSpan IdleExpiry = TimeSpan.FromHours(1);

    private readonly Dictionary<string, Entry> _runs = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public int MaxRuns { get; } = maxRuns > 0 ? maxRuns : throw new ArgumentOutOfRangeException(nameof(maxRuns));

    /// <summary>Runs tracked now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _runs.Count;
            }
        }
    }

    /// <summary>Takes one retry of the run's <paramref name="max"/>; false when they are spent.</summary>
    public bool TryTake(string runId, int max)
    {
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (!_runs.TryGetValue(runId, out var entry))
            {
                if (_runs.Count >= MaxRuns)
                {
                    Evict(now);
                }

                entry = new Entry();
                _runs[runId] = entry;
            }

            entry.LastUsed = now;
            if (entry.Count >= max)
            {
                return false;
            }

            entry.Count++;
            return true;
        }
    }

    /// <summary>Forgets every run idle past <see cref="IdleExpiry"/>, and at least the least recently retried tenth.</summary>
    private void Evict(DateTimeOffset now)
    {
        var byAge = new List<KeyValuePair<string, Entry>>(_runs);
        byAge.Sort(static (a, b) => a.Value.LastUsed.CompareTo(b.Value.LastUsed));
        var atLeast = Math.Max(1, MaxRuns / 10);
        for (var i = 0; i < byAge.Count; i++)
        {
            if (i >= atLeast && now - byAge[i].Value.LastUsed <= IdleExpiry)
            {
                break;
            }

            _runs.Remove(byAge[i].Key);
        }
    }

    private sealed class Entry
    {
        public int Count;
        public DateTimeOffset LastUsed;
    }
}
