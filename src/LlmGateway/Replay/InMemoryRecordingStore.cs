using LlmGateway.Configuration;

namespace LlmGateway.Replay;

/// <summary>
/// Recordings of a single gateway, expiring by the injected clock and bounded: at most Gateway:Cache:RecordingMaxRuns
/// recordings taking at most RecordingMaxBytes together (the one expiring first, i.e. the least recently recorded, is
/// evicted first), each at most RecordingMaxRunBytes. Expired recordings are swept on every call and when the size
/// is read (<see cref="Size"/>, the recordings gauges).
/// </summary>
/// <remarks>
/// A recording stays a prefix of its run: once a step does not fit, neither it nor any later step of the run is
/// recorded, so step n of a recording is always the run's n-th answer. Replay cursors live in the recording they
/// read (a cursor of a recording that is not kept is never stored) and count towards its bytes.
/// </remarks>
internal sealed class InMemoryRecordingStore : IRecordingStore
{
    /// <summary>What a step takes beside its bytes (list slot, array header).</summary>
    internal const int StepOverhead = 64;

    /// <summary>What a recording takes beside its steps (its object, list, dictionary and ordering entries), plus its id.</summary>
    internal const int RunOverhead = 256;

    /// <summary>What a replay cursor takes beside its replaying run's id.</summary>
    internal const int CursorOverhead = 96;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Recording> _recordings = new(StringComparer.Ordinal);
    private readonly SortedSet<Recording> _byExpiry = new(ExpiryOrder.Instance);
    private readonly Func<CacheOptions> _options;
    private readonly TimeProvider _timeProvider;
    private long _bytes;
    private long _sequence;

    /// <param name="options">The cache options now (read on every call, so a reload applies at once).</param>
    /// <param name="timeProvider">The clock recordings expire by.</param>
    public InMemoryRecordingStore(Func<CacheOptions> options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _options = options;
        _timeProvider = timeProvider;
    }

    /// <summary>Bytes and recordings kept now, expired ones swept first.</summary>
    public (long Bytes, int Runs) Size()
    {
        lock (_lock)
        {
            Sweep(_timeProvider.GetUtcNow());
            return (_bytes, _recordings.Count);
        }
    }

    public ValueTask<int> AppendAsync(string runId, byte[] step, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var options = _options();
        var now = _timeProvider.GetUtcNow();
        var cost = (long)step.Length + StepOverhead;
        lock (_lock)
        {
            Sweep(now);
            if (_recordings.TryGetValue(runId, out var recording))
            {
                _byExpiry.Remove(recording);
            }
            else
            {
                recording = new Recording(runId, ++_sequence);
                _recordings.Add(runId, recording);
                Grow(recording, RunOverhead + (2L * runId.Length));
            }

            // Its own bound, and the total's: a recording alone never has to evict itself.
            var number = 0;
            if (!recording.Full && recording.StepBytes + step.Length <= options.RecordingMaxRunBytes && recording.Bytes + cost <= options.RecordingMaxBytes)
            {
                recording.Steps.Add(step);
                recording.StepBytes += step.Length;
                recording.UpdatedAt = now;
                Grow(recording, cost);
                number = recording.Steps.Count;
            }
            else
            {
                recording.Full = true;
            }

            // A refused step keeps the recording (and so its refusal) alive while its run goes on.
            recording.ExpiresAt = now + ttl;
            _byExpiry.Add(recording);
            Evict(options);
            return ValueTask.FromResult(number);
        }
    }

    public ValueTask<byte[]?> GetStepAsync(string runId, int step, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return ValueTask.FromResult(TryGet(runId, out var recording) && step >= 1 && step <= recording.Steps.Count
                ? recording.Steps[step - 1]
                : null);
        }
    }

    public ValueTask<IReadOnlyList<byte[]>?> GetAsync(string runId, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return ValueTask.FromResult<IReadOnlyList<byte[]>?>(TryGet(runId, out var recording) ? recording.Steps.ToArray() : null);
        }
    }

    public ValueTask<IReadOnlyList<RecordingInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var list = new List<RecordingInfo>();
        lock (_lock)
        {
            Sweep(_timeProvider.GetUtcNow());
            foreach (var (id, recording) in _recordings)
            {
                if (recording.Steps.Count > 0)
                {
                    list.Add(new RecordingInfo(id, recording.Steps.Count, recording.UpdatedAt, recording.ExpiresAt, recording.StepBytes));
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
            var existed = TryGet(runId, out _);
            if (_recordings.TryGetValue(runId, out var recording))
            {
                Remove(recording);
            }

            return ValueTask.FromResult(existed);
        }
    }

    public ValueTask<int> NextReplayStepAsync(string recordedRunId, string replayRunId, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var options = _options();
        var now = _timeProvider.GetUtcNow();
        lock (_lock)
        {
            // No recording, no cursor: a replay of a run that is not kept misses at step 1, and leaves nothing behind.
            if (!TryGet(recordedRunId, out var recording))
            {
                return ValueTask.FromResult(1);
            }

            int step;
            if (recording.Cursors.TryGetValue(replayRunId, out var cursor))
            {
                step = cursor.ExpiresAt > now ? cursor.Step + 1 : 1;
            }
            else
            {
                step = 1;
                Grow(recording, CursorOverhead + (2L * replayRunId.Length));
            }

            recording.Cursors[replayRunId] = (step, now + ttl);
            Evict(options);
            return ValueTask.FromResult(step);
        }
    }

    /// <summary>A kept recording with at least one step (a run whose first step did not fit has none to show).</summary>
    private bool TryGet(string runId, out Recording recording)
    {
        Sweep(_timeProvider.GetUtcNow());
        return _recordings.TryGetValue(runId, out recording!) && recording.Steps.Count > 0;
    }

    private void Sweep(DateTimeOffset now)
    {
        while (_byExpiry.Min is { } first && first.ExpiresAt <= now)
        {
            Remove(first);
        }
    }

    private void Evict(CacheOptions options)
    {
        while ((_bytes > options.RecordingMaxBytes || _recordings.Count > options.RecordingMaxRuns) && _byExpiry.Min is { } first)
        {
            Remove(first);
        }
    }

    private void Grow(Recording recording, long bytes)
    {
        recording.Bytes += bytes;
        _bytes += bytes;
    }

    private void Remove(Recording recording)
    {
        _byExpiry.Remove(recording);
        _recordings.Remove(recording.RunId);
        _bytes -= recording.Bytes;
    }

    private sealed class Recording(string runId, long sequence)
    {
        public readonly string RunId = runId;

        /// <summary>Ties between equal expiries, so the ordering never takes two recordings for one.</summary>
        public readonly long Sequence = sequence;

        public readonly List<byte[]> Steps = [];
        public readonly Dictionary<string, (int Step, DateTimeOffset ExpiresAt)> Cursors = new(StringComparer.Ordinal);

        /// <summary>Bytes of the steps as stored: what RecordingMaxRunBytes bounds.</summary>
        public long StepBytes;

        /// <summary>Everything the recording takes: its steps, cursors and overhead; what RecordingMaxBytes adds up.</summary>
        public long Bytes;

        public bool Full;
        public DateTimeOffset UpdatedAt;
        public DateTimeOffset ExpiresAt;
    }

    /// <summary>Earliest expiry first; changed only while a recording is out of the set.</summary>
    private sealed class ExpiryOrder : IComparer<Recording>
    {
        public static readonly ExpiryOrder Instance = new();

        public int Compare(Recording? x, Recording? y)
        {
            var order = x!.ExpiresAt.CompareTo(y!.ExpiresAt);
            return order != 0 ? order : x.Sequence.CompareTo(y.Sequence);
        }
    }
}
