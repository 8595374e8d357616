namespace LlmGateway.Approvals;

/// <summary>The approval store of a single gateway process; same semantics as <see cref="RedisApprovalStore"/>.</summary>
public sealed class InMemoryApprovalStore : IApprovalStore
{
    /// <summary>Live approvals kept at most; beyond, opening one fails (503) rather than growing without bound.</summary>
    public const int MaxApprovals = 10_000;

    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;

    public InMemoryApprovalStore(TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        _time = timeProvider;
    }

    public ValueTask<ApprovalOpenResult> OpenAsync(ApprovalRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var slot = ApprovalIds.SlotOfBinding(request.Binding);
        lock (_lock)
        {
            if (_entries.TryGetValue(slot, out var entry) && entry.ExpiresAt > request.Now && entry.Record.Request.Binding == request.Binding)
            {
                return ValueTask.FromResult(new ApprovalOpenResult(entry.Record, false));
            }

            if (_entries.Count >= MaxApprovals)
            {
                Sweep(request.Now, null);
                if (_entries.Count >= MaxApprovals)
                {
                    throw new ApprovalStoreUnavailableException($"The in-memory approval store holds {MaxApprovals} approvals; decide or let some expire.");
                }
            }

            var record = new ApprovalRecord { Id = ApprovalIds.New(request.Binding), State = ApprovalState.Pending, Request = request };
            if (entry is not null)
            {
                entry.Changed.TrySetResult();
            }

            _entries[slot] = new Entry(record, request.Now + request.PendingTtl);
            return ValueTask.FromResult(new ApprovalOpenResult(record, true));
        }
    }

    public ValueTask<ApprovalRecord?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return ValueTask.FromResult(Find(id, _time.GetUtcNow())?.Record);
        }
    }

    public ValueTask<ApprovalListing> ListPendingAsync(int max, CancellationToken cancellationToken = default)
    {
        var expired = new List<string>();
        List<ApprovalRecord> pending;
        lock (_lock)
        {
            Sweep(_time.GetUtcNow(), expired);
            pending = [.. _entries.Values.Select(e => e.Record).Where(r => r.State == ApprovalState.Pending).OrderBy(r => r.CreatedAt).Take(max)];
        }

        return ValueTask.FromResult(new ApprovalListing(pending, expired));
    }

    public ValueTask<ApprovalDecisionResult> DecideAsync(ApprovalDecision decision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(decision);
        lock (_lock)
        {
            var entry = Find(decision.Id, decision.Now);
            if (entry is null)
            {
                return ValueTask.FromResult(new ApprovalDecisionResult(ApprovalDecisionOutcome.NotFound, null));
            }

            if (entry.Record.State != ApprovalState.Pending)
            {
                return ValueTask.FromResult(new ApprovalDecisionResult(ApprovalDecisionOutcome.AlreadyDecided, entry.Record));
            }

            var record = entry.Record with
            {
                State = decision.Approve ? ApprovalState.Approved : ApprovalState.Denied,
                DecidedAt = decision.Now,
                DecidedBy = decision.DecidedBy,
                Reason = decision.Reason,
                DenialCode = decision.Approve ? null : decision.DenialCode,
            };
            _entries[ApprovalIds.SlotOfBinding(record.Request.Binding)] = new Entry(record, decision.Now + record.Request.DecisionTtl);
            entry.Changed.TrySetResult();
            return ValueTask.FromResult(new ApprovalDecisionResult(ApprovalDecisionOutcome.Decided, record));
        }
    }

    public async Task WaitForChangeAsync(string id, TimeSpan maxWait, CancellationToken cancellationToken = default)
    {
        Task changed;
        lock (_lock)
        {
            var entry = Find(id, _time.GetUtcNow());
            if (entry is null || entry.Record.State != ApprovalState.Pending)
            {
                return;
            }

            changed = entry.Changed.Task;
        }

        try
        {
            await changed.WaitAsync(maxWait, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }
    }

    private Entry? Find(string id, DateTimeOffset now)
    {
        var slot = ApprovalIds.Slot(id);
        return slot is not null && _entries.TryGetValue(slot, out var entry) && entry.Record.Id == id && entry.ExpiresAt > now ? entry : null;
    }

    private void Sweep(DateTimeOffset now, List<string>? expiredPendingTools)
    {
        foreach (var (slot, entry) in _entries)
        {
            if (entry.ExpiresAt <= now)
            {
                _entries.Remove(slot);
                entry.Changed.TrySetResult();
                if (entry.Record.State == ApprovalState.Pending)
                {
                    expiredPendingTools?.Add(entry.Record.Request.Tool);
                }
            }
        }
    }

    private sealed class Entry(ApprovalRecord record, DateTimeOffset expiresAt)
    {
        public ApprovalRecord Record { get; } = record;

        public DateTimeOffset ExpiresAt { get; } = expiresAt;

        /// <summary>Completed when this approval is decided, replaced or expires.</summary>
        public TaskCompletionSource Changed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
