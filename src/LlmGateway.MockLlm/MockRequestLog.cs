namespace LlmGateway.MockLlm;

/// <summary>The requests the mock LLM received, oldest first, for tests and benchmarks to inspect.</summary>
public sealed class MockRequestLog
{
    /// <summary>How many records are kept by default; older ones are dropped so a long benchmark stays bounded.</summary>
    public const int DefaultCapacity = 10_000;

    private readonly Lock _lock = new();
    private readonly Queue<MockRequestRecord> _records = new();
    private readonly Dictionary<string, int> _scenarioAttempts = new(StringComparer.Ordinal);
    private readonly TimeProvider _timeProvider;
    private readonly DateTimeOffset _origin;
    private readonly long _originTimestamp;
    private readonly int _capacity;
    private long _sequence;

    public MockRequestLog()
        : this(TimeProvider.System)
    {
    }

    public MockRequestLog(TimeProvider timeProvider, int capacity = DefaultCapacity)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _timeProvider = timeProvider;
        _capacity = capacity;
        // Wall clock once, then the high-resolution timestamp: intervals between records are stopwatch-precise.
        _origin = timeProvider.GetUtcNow();
        _originTimestamp = timeProvider.GetTimestamp();
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _records.Count;
            }
        }
    }

    public IReadOnlyList<MockRequestRecord> Snapshot()
    {
        lock (_lock)
        {
            return _records.ToArray();
        }
    }

    /// <summary>How many kept records have exactly this path (case-insensitive).</summary>
    public int CountFor(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var count = 0;
        lock (_lock)
        {
            foreach (var record in _records)
            {
                if (string.Equals(record.Path, path, StringComparison.OrdinalIgnoreCase))
                {
                    count++;
                }
            }
        }

        return count;
    }

    /// <summary>Forgets every record and every <c>X-Mock-Scenario</c> attempt counter.</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _records.Clear();
            _scenarioAttempts.Clear();
        }
    }

    internal MockRequestRecord Add(string method, string path, string? model, string body, IReadOnlyDictionary<string, string> headers, bool stream)
    {
        lock (_lock)
        {
            // Sequence and timestamp are taken under the lock so both orders agree.
            var record = new MockRequestRecord(
                ++_sequence, _origin + _timeProvider.GetElapsedTime(_originTimestamp), method, path, model, body, headers, stream);
            if (_records.Count == _capacity)
            {
                _records.Dequeue();
            }

            _records.Enqueue(record);
            return record;
        }
    }

    // 1 for the first request of a scenario, 2 for the second... (X-Mock-Fail-Times).
    internal int NextScenarioAttempt(string scenario)
    {
        lock (_lock)
        {
            _scenarioAttempts.TryGetValue(scenario, out var attempts);
            _scenarioAttempts[scenario] = ++attempts;
            return attempts;
        }
    }
}
