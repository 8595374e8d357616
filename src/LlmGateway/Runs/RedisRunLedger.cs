using System.Globalization;
using System.Text.Json;
using LlmGateway.Budgets;
using LlmGateway.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace LlmGateway.Runs;

/// <summary>
/// The run ledger shared by every replica. A run's keys carry the admission store's tag <c>{r:&lt;run&gt;}</c>, so they
/// live in the run's hash slot on a Redis Cluster: <c>{r:id}:log</c> (hash: start, last, user, team, llm, tool, cost in
/// nano-dollars, end) and <c>{r:id}:calls</c> (list of JSON entries, trimmed to the newest
/// <see cref="RunConstants.CallsPerRun"/>, expiring after the idle time). Runs not yet ended are also in one sorted set
/// (<c>runs:active</c>, by last activity), which each replica's sweep reads to find the idle ones; the end script sets
/// <c>end</c> only when it is absent, so whichever replica (report or sweep) gets there first observes the run, once.
/// </summary>
/// <remarks>
/// Calls are written in batches (<see cref="RunLedgerWriter"/>, every 100 ms): one script per run and one <c>ZADD</c>
/// per batch. Reads of a run on this replica (its calls, its outcome report) and the idle sweep write this replica's
/// queued calls first; another replica sees a call up to one flush period (plus the write) later.
/// </remarks>
internal sealed class RedisRunLedger : IRunLedger, IAsyncDisposable, IDisposable
{
    /// <summary>Idle runs ended per sweep at most (the next sweep takes the rest).</summary>
    private const int SweepBatch = 256;

    private readonly RedisConnection _redis;
    private readonly string _prefix;
    private readonly RedisKey _active;
    private readonly long _idleMs;
    private readonly long _lifeMs;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly long _callsLifeMs;
    private readonly long _refreshMs;
    private readonly RunLedgerWriter _writer;
    private readonly TimeSpan _flushPeriod;

    /// <param name="timeout">Bound of every awaited Redis call (the admin and outcome endpoints, the sweep, a batch).</param>
    /// <param name="flushPeriod">Time between batches (default <see cref="RunLedgerWriter.DefaultPeriod"/>; infinite: on reads and stop only).</param>
    /// <param name="queueCapacity">Calls queued at most; past it calls are dropped and counted (<paramref name="onDropped"/>).</param>
    public RedisRunLedger(RedisConnection redis, string keyPrefix, TimeSpan idleExpiry, TimeSpan timeout, TimeProvider time, ILogger<RedisRunLedger> logger,
        TimeSpan? flushPeriod = null, int queueCapacity = RunLedgerWriter.DefaultCapacity, Action<long>? onDropped = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(time);
        _redis = redis;
        _prefix = keyPrefix;
        _active = keyPrefix + "runs:active";
        _idleMs = (long)idleExpiry.TotalMilliseconds;

        // The log (with its end marker) outlives the idle time, so a sweep that runs late still finds what it ends.
        _lifeMs = (2 * _idleMs) + 60_000;
        _timeout = timeout;
        _time = time;
        _logger = logger;

        // Expiry is refreshed at most every quarter of the idle time (at most every minute): see RedisRunScripts.Record.
        _refreshMs = Math.Clamp(_idleMs / 4, 1, 60_000);
        _callsLifeMs = _idleMs + (2 * _refreshMs);
        _flushPeriod = flushPeriod ?? RunLedgerWriter.DefaultPeriod;
        _writer = new RunLedgerWriter(WriteBatchAsync, _flushPeriod, queueCapacity, onDropped, logger);
    }

    /// <summary>The batching writer (tests: batches sent, calls queued and dropped).</summary>
    internal RunLedgerWriter Writer => _writer;

    public void Record(string runId, string user, string? team, RunCallEntry entry) =>
        _writer.Enqueue(runId, new PendingRunCall(NowMs(), user, team ?? string.Empty, entry));

    /// <summary>Writes every queued call now (graceful stop).</summary>
    public Task FlushAsync(CancellationToken cancellationToken) => _writer.FlushAllAsync(cancellationToken);

    public ValueTask DisposeAsync() => _writer.DisposeAsync();

    public void Dispose() => _writer.Dispose();

    public async ValueTask<IReadOnlyList<RunCallEntry>?> GetCallsAsync(string runId, CancellationToken cancellationToken)
    {
        await _writer.FlushRunAsync(runId, cancellationToken).ConfigureAwait(false);
        var values = await BoundAsync(ListAsync(CallsKey(runId)), cancellationToken).ConfigureAwait(false);
        if (values.Length == 0)
        {
            return null;
        }

        var calls = new List<RunCallEntry>(values.Length);
        foreach (var value in values)
        {
            if (JsonSerializer.Deserialize<RunCallEntry>((string)value!, RunCallEntry.Json) is { } entry)
            {
                calls.Add(entry);
            }
        }

        calls.Sort(RunCallEntry.Compare);
        return calls;
    }

    public async ValueTask<RunEnding> EndAsync(string runId, string user, string outcome, CancellationToken cancellationToken)
    {
        await _writer.FlushRunAsync(runId, cancellationToken).ConfigureAwait(false);

        // Other replicas write their calls of this run up to one flush period late: wait for them (two periods, real
        // time), or a run whose calls went through another replica just now would be unknown (404) or end without them.
        if (_flushPeriod > TimeSpan.Zero && _flushPeriod != Timeout.InfiniteTimeSpan)
        {
            await Task.Delay(_flushPeriod * 2, cancellationToken).ConfigureAwait(false);
        }

        var now = NowMs();
        var reply = (RedisResult[])(await BoundAsync(_redis.EvaluateAsync(RedisRunScripts.End, [LogKey(runId)], [now, _idleMs, outcome, user]), cancellationToken).ConfigureAwait(false))!;
        return (long)reply[0] switch
        {
            1 => new RunEnding(RunEndStatus.Ended, outcome, Summary(runId, outcome, reply, now)),
            2 => new RunEnding(RunEndStatus.AlreadyEnded, (string?)reply[1], null),
            3 => new RunEnding(RunEndStatus.OtherUser, null, null),
            _ => new RunEnding(RunEndStatus.UnknownRun, null, null),
        };
    }

    public async ValueTask<IReadOnlyList<RunSummary>> EndIdleAsync(CancellationToken cancellationToken)
    {
        // A run with a call queued here is not idle: write the queue before looking.
        await _writer.FlushAllAsync(cancellationToken).ConfigureAwait(false);
        var cutoff = NowMs() - _idleMs;
        var database = await BoundAsync(_redis.DatabaseAsync(), cancellationToken).ConfigureAwait(false);
        var idle = await BoundAsync(database.SortedSetRangeByScoreAsync(_active, double.NegativeInfinity, cutoff, take: SweepBatch), cancellationToken).ConfigureAwait(false);
        List<RunSummary>? ended = null;
        foreach (var member in idle)
        {
            var runId = (string)member!;
            var now = NowMs();
            var reply = (RedisResult[])(await BoundAsync(_redis.EvaluateAsync(RedisRunScripts.End, [LogKey(runId)], [now, _idleMs, RunConstants.Unknown, ""]), cancellationToken).ConfigureAwait(false))!;
            var status = (long)reply[0];
            if (status == 1)
            {
                // An idle run ends at its last call, not at the sweep that noticed it.
                var last = long.Parse((string)reply[2]!, CultureInfo.InvariantCulture);
                (ended ??= []).Add(Summary(runId, RunConstants.Unknown, reply, last));
            }

            if (status != 4)
            {
                await BoundAsync(_redis.EvaluateAsync(RedisRunScripts.ForgetIdle, [_active], [runId, cutoff]), cancellationToken).ConfigureAwait(false);
            }
        }

        return ended ?? (IReadOnlyList<RunSummary>)[];
    }

    private static RunSummary Summary(string runId, string outcome, RedisResult[] reply, long endMs)
    {
        static long Number(RedisResult value) => long.Parse((string)value!, CultureInfo.InvariantCulture);
        var start = Number(reply[1]);
        return new RunSummary(runId, (string)reply[3]!, (string)reply[4]!, outcome, Number(reply[5]), Number(reply[6]), UsdAmount.ToUsd(Number(reply[7])),
            TimeSpan.FromMilliseconds(Math.Max(0, endMs - start)));
    }

    private async Task WriteBatchAsync(IReadOnlyDictionary<string, List<PendingRunCall>> runs)
    {
        var writes = new List<(string RunId, List<PendingRunCall> Calls, Task Task)>(runs.Count);
        var active = new SortedSetEntry[runs.Count];
        foreach (var (runId, calls) in runs)
        {
            var (args, newest) = RecordArgs(calls);
            writes.Add((runId, calls, _redis.EvaluateAsync(RedisRunScripts.Record, [LogKey(runId), CallsKey(runId)], args)));
            active[writes.Count - 1] = new SortedSetEntry(runId, newest);
        }

        Task zadd;
        try
        {
            var database = await _redis.DatabaseAsync().WaitAsync(_timeout).ConfigureAwait(false);
            zadd = database.SortedSetAddAsync(_active, active);
        }
        catch (Exception ex) when (RedisConnection.IsUnavailable(ex))
        {
            zadd = Task.FromException(ex);
        }

        try
        {
            await Task.WhenAll(writes.Select(w => w.Task).Append(zadd)).WaitAsync(_timeout).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisConnection.IsUnavailable(ex))
        {
            foreach (var (runId, calls, task) in writes)
            {
                if (!task.IsCompletedSuccessfully)
                {
                    RedisConnection.Observe(task);
                    var first = calls[0].Entry.RequestId;
                    RunLog.RecordFailed(_logger, calls.Count == 1 ? first : $"{first} (and {calls.Count - 1} more)", runId,
                        task.Exception?.GetBaseException().Message ?? ex.Message);
                }
            }

            RedisConnection.Observe(zadd);
        }
    }

    /// <summary>The record script's arguments for one run's calls (only the newest <see cref="RunConstants.CallsPerRun"/> carry their entry), and its newest call's time.</summary>
    private (RedisValue[] Args, long Newest) RecordArgs(List<PendingRunCall> calls)
    {
        var args = new RedisValue[RedisRunScripts.RecordFixedArgs + (RedisRunScripts.RecordArgsPerCall * calls.Count)];
        args[0] = _idleMs;
        args[1] = _lifeMs;
        args[2] = _callsLifeMs;
        args[3] = _refreshMs;
        args[4] = RunConstants.CallsPerRun;
        var newest = long.MinValue;
        var kept = calls.Count - RunConstants.CallsPerRun;
        for (var i = 0; i < calls.Count; i++)
        {
            var call = calls[i];
            var at = RedisRunScripts.RecordFixedArgs + (RedisRunScripts.RecordArgsPerCall * i);
            args[at] = call.NowMs;
            args[at + 1] = call.User;
            args[at + 2] = call.Team;
            args[at + 3] = call.Entry.Kind == RunConstants.KindTool ? RunConstants.KindTool : RunConstants.KindLlm;
            args[at + 4] = UsdAmount.ToNanosCeiling(call.Entry.CostUsd ?? 0);
            args[at + 5] = i < kept ? string.Empty : JsonSerializer.Serialize(call.Entry, RunCallEntry.Json);
            newest = Math.Max(newest, call.NowMs);
        }

        return (args, newest);
    }

    private async Task<RedisValue[]> ListAsync(RedisKey key)
    {
        var database = await _redis.DatabaseAsync().ConfigureAwait(false);
        return await database.ListRangeAsync(key).ConfigureAwait(false);
    }

    private async Task<T> BoundAsync<T>(Task<T> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call.WaitAsync(_timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisConnection.IsUnavailable(ex))
        {
            RedisConnection.Observe(call);
            throw new RunLedgerUnavailableException($"Redis did not answer within {_timeout.TotalMilliseconds:0} ms: {ex.Message}", ex);
        }
    }

    private RedisKey LogKey(string runId) => _prefix + "{r:" + runId + "}:log";

    private RedisKey CallsKey(string runId) => _prefix + "{r:" + runId + "}:calls";

    private long NowMs() => _time.GetUtcNow().ToUnixTimeMilliseconds();
}

/// <summary>The run ledger's Redis did not answer in time (the outcome and admin endpoints answer 503 store_unavailable).</summary>
internal sealed class RunLedgerUnavailableException(string message, Exception inner) : Exception(message, inner);
