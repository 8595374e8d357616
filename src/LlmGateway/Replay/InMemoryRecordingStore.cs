namespace LlmGateway.Replay;

/// <summary>Recordings of a single gateway, expiring by the injected clock.</summary>
internal sealed class InMemoryRecordingStore : IRecordingStore
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Recording> _recordings = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (int Step, DateTimeOffset ExpiresAt)> _cursors = new(StringComparer.Ordinal);
    private readonly TimeProvider _timeProvider;

    public InMemoryRecordingStore(TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        _timeProvider = timeProvider;
    }

    public ValueTask<int> AppendAsync(string runId, byte[] step, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var now = _timeProvider.GetUtcNow();
        lock (_lock)
        {
            if (!TryGet(runId, now, out var recording))
            {
                _recordings[runId] = recording = new Recording();
            }

            recording.Steps.Add(step);
            recording.UpdatedAt = now;
            recording.ExpiresAt = now + ttl;
            return ValueTask.FromResult(recording.Steps.Count);
        }
    }

    public ValueTask<byte[]?> GetStepAsync(string runId, int step, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return ValueTask.FromResult(TryGet(runId, _timeProvider.GetUtcNow(), out var recording) && step >= 1 && step <= recording.Steps.Count
                ? recording.Steps[step - 1]
                : null);
        }
    }

    public ValueTask<IReadOnlyList<byte[]>?> GetAsync(string runId, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return ValueTask.FromResult<IReadOnlyList<byte[]>?>(TryGet(runId, _timeProvider.GetUtcNow(), out var recording) ? recording.Steps.ToArray() : null);
        }
    }

    public ValueTask<IReadOnlyList<RecordingInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var now = _timeProvider.GetUtcNow();
        var list = new List<RecordingInfo>();
        lock (_lock)
        {
            foreach (var (id, recording) in _recordings)
            {
                if (recording.ExpiresAt > now)
                {
                    list.Add(new RecordingInfo(id, recording.Steps.Count, recording.UpdatedAt, recording.ExpiresAt));
                }
            }
        }

        list.Sort(static (a, b) => string.CompareOrdinal(a.RunId, b.RunId));
        return ValueTask.FromResult<IReadOnlyList<RecordingInfo>>(list);
    }

    public ValueTask<bool> DeleteAsync(string runId, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var existed = TryGet(runId, _timeProvider.GetUtcNow(), out _);
            _recordings.Remove(runId);
            return ValueTask.FromResult(existed);
        }
    }

    public ValueTask<int> NextReplayStepAsync(string recordedRunId, string replayRunId, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var now = _timeProvider.GetUtcNow();
        var key = recordedRunId + "\n" + replayRunId;
        lock (_lock)
        {
            var step = _cursors.TryGetValue(key, out var cursor) && cursor.ExpiresAt > now ? cursor.Step + 1 : 1;
            _cursors[key] = (step, now + ttl);
            return ValueTask.FromResult(step);
        }
    }

    private bool TryGet(string runId, DateTimeOffset now, out Recording recording)
    {
        if (_recordings.TryGetValue(runId, out recording!) && recording.ExpiresAt > now)
        {
            return true;
        }

        _recordings.Remove(runId);
        return false;
    }

    private sealed class Recording
    {
        public readonly List<byte[]> Steps = [];
        public DateTimeOffset UpdatedAt;
        public DateTimeOffset ExpiresAt;
    }
}
