using Microsoft.Extensions.Logging;

namespace LlmGateway.Runs;

/// <summary>A call waiting in <see cref="RunLedgerWriter"/> to be written to its run.</summary>
internal readonly record struct PendingRunCall(long NowMs, string User, string Team, RunCallEntry Entry);

/// <summary>
/// Batches the run ledger's writes: <see cref="Enqueue"/> queues a call in memory, and every flush period (100 ms by
/// default) the queued calls are written grouped by run (<see cref="WriteBatch"/>: the Redis ledger sends one script
/// per run and one <c>ZADD</c> for all of them). Reads of a run on this replica flush that run first
/// (<see cref="FlushRunAsync"/>), so they see every call this replica made; <see cref="DisposeAsync"/> flushes the rest.
/// </summary>
/// <remarks>
/// The queue is bounded (<c>capacity</c> calls). When it is full a call is dropped, counted (<c>onDropped</c>, the
/// <c>llm_gateway_run_records_dropped_total</c> metric) and logged once per flush, rather than written on its own:
/// the queue only fills when Redis does not keep up with the flushes, and a write per call then would multiply the
/// load on the Redis that is already behind (a Redis that does not answer loses the calls too, logged). The request
/// path never waits: <see cref="Enqueue"/> takes a lock for a list append only. Flushes run one at a time (a run's
/// calls reach Redis in the order they were queued).
/// </remarks>
internal sealed class RunLedgerWriter : IAsyncDisposable, IDisposable
{
    public const int DefaultCapacity = 20_000;

    public static readonly TimeSpan DefaultPeriod = TimeSpan.FromMilliseconds(100);

    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Func<IReadOnlyDictionary<string, List<PendingRunCall>>, Task> _write;
    private readonly int _capacity;
    private readonly Action<long>? _onDropped;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _loop;
    private Dictionary<string, List<PendingRunCall>> _pending = new(StringComparer.Ordinal);
    private Dictionary<string, List<PendingRunCall>>? _inFlight;
    private int _count;
    private long _dropped;
    private long _droppedUnlogged;
    private long _batches;
    private int _disposed;

    /// <param name="write">Writes one batch (calls grouped by run, in queued order); logs its own failures.</param>
    /// <param name="period">Time between flushes; <see cref="Timeout.InfiniteTimeSpan"/> flushes only on reads and on stop (tests).</param>
    public RunLedgerWriter(Func<IReadOnlyDictionary<string, List<PendingRunCall>>, Task> write, TimeSpan period, int capacity, Action<long>? onDropped, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(write);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(capacity, 0);
        _write = write;
        _capacity = capacity;
        _onDropped = onDropped;
        _logger = logger;
        _loop = period == Timeout.InfiniteTimeSpan ? Task.CompletedTask : Task.Run(() => LoopAsync(period));
    }

    /// <summary>Calls queued and not yet handed to a write.</summary>
    public int Pending
    {
        get
        {
            lock (_lock)
            {
                return _count;
            }
        }
    }

    /// <summary>Calls dropped because the queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Batches handed to the write so far (tests: how many round trips the calls took).</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Queues a call; false (counted, logged at the next flush) when the queue is full. Never waits.</summary>
    public bool Enqueue(string runId, PendingRunCall call)
    {
        lock (_lock)
        {
            if (_count < _capacity && _disposed == 0)
            {
                if (!_pending.TryGetValue(runId, out var calls))
                {
                    _pending[runId] = calls = [];
                }

                calls.Add(call);
                _count++;
                return true;
            }
        }

        Interlocked.Increment(ref _dropped);
        Interlocked.Increment(ref _droppedUnlogged);
        _onDropped?.Invoke(1);
        return false;
    }

    /// <summary>Writes the run's queued calls (and waits for a flush carrying some of them) before a read of that run.</summary>
    public async Task FlushRunAsync(string runId, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (!_pending.ContainsKey(runId) && _inFlight?.ContainsKey(runId) != true)
            {
                return;
            }
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Dictionary<string, List<PendingRunCall>>? batch = null;
            lock (_lock)
            {
                if (_pending.Remove(runId, out var calls))
                {
                    _count -= calls.Count;
                    _inFlight = batch = new(StringComparer.Ordinal) { [runId] = calls };
                }
            }

            await WriteAsync(batch).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Writes every queued call (the idle sweep, stop).</summary>
    public async Task FlushAllAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Dictionary<string, List<PendingRunCall>>? batch = null;
            lock (_lock)
            {
                if (_count > 0)
                {
                    _inFlight = batch = _pending;
                    _pending = new(StringComparer.Ordinal);
                    _count = 0;
                }
            }

            await WriteAsync(batch).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }

        var dropped = Interlocked.Exchange(ref _droppedUnlogged, 0);
        if (dropped > 0)
        {
            RunLog.RecordsDropped(_logger, dropped, _capacity);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        await FlushAllAsync(CancellationToken.None).ConfigureAwait(false);
        _stopping.Dispose();
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private async Task WriteAsync(Dictionary<string, List<PendingRunCall>>? batch)
    {
        if (batch is null)
        {
            return;
        }

        try
        {
            Interlocked.Increment(ref _batches);
            await _write(batch).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // The write logs Redis failures per run itself; anything else must not stop the flushes.
            RunLog.RecordFailed(_logger, "(batch)", string.Join(",", batch.Keys.Take(3)), ex.Message);
        }
        finally
        {
            lock (_lock)
            {
                _inFlight = null;
            }
        }
    }

    private async Task LoopAsync(TimeSpan period)
    {
        using var timer = new PeriodicTimer(period);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                await FlushAllAsync(_stopping.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            // Stopping: DisposeAsync flushes what is left.
        }
    }
}
