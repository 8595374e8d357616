namespace LlmGateway.Runs;

/// <summary>
/// The run ledger of a single gateway. Memory is bounded twice: at most <see cref="RunConstants.CallsPerRun"/> entries
/// per run and <see cref="RunConstants.MaxEntriesInMemory"/> over all runs (the least recently active runs give theirs
/// up first, keeping their totals), and at most <c>maxRuns</c> runs (Gateway:Store:MaxRuns; past it the least recently
/// active run is forgotten unobserved). Runs are kept in order of last activity, so idling out and eviction take
/// the oldest in constant time.
/// </summary>
internal sealed class InMemoryRunLedger : IRunLedger
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, RunLog> _runs = new(StringComparer.Ordinal);
    private readonly LinkedList<RunLog> _byActivity = new();
    private readonly TimeProvider _time;
    private readonly long _idleMs;
    private readonly int _maxRuns;
    private readonly int _maxEntries;
    private int _entries;

    public InMemoryRunLedger(TimeSpan idleExpiry, int maxRuns, TimeProvider time, int maxEntries = RunConstants.MaxEntriesInMemory)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(maxRuns, 0);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(maxEntries, 0);
        _time = time;
        _idleMs = (long)idleExpiry.TotalMilliseconds;
        _maxRuns = maxRuns;
        _maxEntries = maxEntries;
    }

    /// <summary>Call entries kept now over all runs (tests: the bound).</summary>
    internal int Entries
    {
        get
        {
            lock (_lock)
            {
                return _entries;
            }
        }
    }

    /// <summary>Runs tracked now (tests: the bound).</summary>
    internal int Runs
    {
        get
        {
            lock (_lock)
            {
                return _runs.Count;
            }
        }
    }

    public void Record(string runId, string user, string? team, RunCallEntry entry)
    {
        var now = NowMs();
        lock (_lock)
        {
            if (!_runs.TryGetValue(runId, out var run) || now - run.LastMs >= _idleMs)
            {
                if (run is not null)
                {
                    // Idle past its expiry but not swept yet: a new run under the same id (as the admission store sees it).
                    Remove(run);
                }

                while (_runs.Count >= _maxRuns && _byActivity.First is { } oldest)
                {
                    Remove(oldest.Value);
                }

                run = new RunLog(runId, user, team ?? string.Empty, now);
                run.Node = _byActivity.AddLast(run);
                _runs[runId] = run;
            }
            else
            {
                _byActivity.Remove(run.Node!);
                _byActivity.AddLast(run.Node!);
            }

            run.LastMs = Math.Max(run.LastMs, now);
            if (run.Outcome is null)
            {
                if (entry.Kind == RunConstants.KindTool)
                {
                    run.ToolCalls++;
                }
                else
                {
                    run.LlmCalls++;
                }

                run.CostUsd += entry.CostUsd ?? 0;
            }

            if (run.Calls.Count == RunConstants.CallsPerRun)
            {
                run.Calls.Dequeue();
                _entries--;
            }

            run.Calls.Enqueue(entry);
            _entries++;
            for (var oldest = _byActivity.First; _entries > _maxEntries && oldest is not null; oldest = oldest.Next)
            {
                _entries -= oldest.Value.Calls.Count;
                oldest.Value.Calls.Clear();
            }
        }
    }

    public ValueTask<IReadOnlyList<RunCallEntry>?> GetCallsAsync(string runId, CancellationToken cancellationToken)
    {
        var now = NowMs();
        lock (_lock)
        {
            if (!_runs.TryGetValue(runId, out var run) || now - run.LastMs >= _idleMs)
            {
                return ValueTask.FromResult<IReadOnlyList<RunCallEntry>?>(null);
            }

            var calls = run.Calls.ToList();
            calls.Sort(RunCallEntry.Compare);
            return ValueTask.FromResult<IReadOnlyList<RunCallEntry>?>(calls);
        }
    }

    public ValueTask<RunEnding> EndAsync(string runId, string user, string outcome, CancellationToken cancellationToken)
    {
        var now = NowMs();
        lock (_lock)
        {
            // A run idle past its expiry is the sweep's to end (as unknown): for its caller it is gone, as for the admission store.
            if (!_runs.TryGetValue(runId, out var run) || now - run.LastMs >= _idleMs)
            {
                return ValueTask.FromResult(new RunEnding(RunEndStatus.UnknownRun, null, null));
            }

            if (!string.Equals(run.User, user, StringComparison.Ordinal))
            {
                return ValueTask.FromResult(new RunEnding(RunEndStatus.OtherUser, null, null));
            }

            if (run.Outcome is { } earlier)
            {
                return ValueTask.FromResult(new RunEnding(RunEndStatus.AlreadyEnded, earlier, null));
            }

            run.Outcome = outcome;
            return ValueTask.FromResult(new RunEnding(RunEndStatus.Ended, outcome, run.Summary(outcome, now)));
        }
    }

    public ValueTask<IReadOnlyList<RunSummary>> EndIdleAsync(CancellationToken cancellationToken)
    {
        var now = NowMs();
        List<RunSummary>? ended = null;
        lock (_lock)
        {
            while (_byActivity.First is { } oldest && now - oldest.Value.LastMs >= _idleMs)
            {
                var run = oldest.Value;
                if (run.Outcome is null)
                {
                    (ended ??= []).Add(run.Summary(RunConstants.Unknown, run.LastMs));
                }

                Remove(run);
            }
        }

        return ValueTask.FromResult<IReadOnlyList<RunSummary>>(ended ?? []);
    }

    private void Remove(RunLog run)
    {
        _entries -= run.Calls.Count;
        _byActivity.Remove(run.Node!);
        _runs.Remove(run.RunId);
    }

    private long NowMs() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private sealed class RunLog(string runId, string user, string team, long startMs)
    {
        public string RunId { get; } = runId;

        public string User { get; } = user;

        public string Team { get; } = team;

        public long StartMs { get; } = startMs;

        public long LastMs { get; set; } = startMs;

        public long LlmCalls { get; set; }

        public long ToolCalls { get; set; }

        public decimal CostUsd { get; set; }

        /// <summary>Set once, when the run ends; calls after it are still listed but no longer counted.</summary>
        public string? Outcome { get; set; }

        public Queue<RunCallEntry> Calls { get; } = new();

        public LinkedListNode<RunLog>? Node { get; set; }

        public RunSummary Summary(string outcome, long endMs) =>
            new(RunId, User, Team, outcome, LlmCalls, ToolCalls, CostUsd, TimeSpan.FromMilliseconds(Math.Max(0, endMs - StartMs)));
    }
}
