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
internal sealed class RedisRunLedger : IRunLedger
{
    /// <summary>Idle runs ended per sweep at most (the next sweep takes the rest).</summary>
    private const int SweepBatch = 256;

    // KEYS: 1 log, 2 calls. ARGV: 1 now ms, 2 idle ms, 3 log life ms, 4 cap, 5 user, 6 team, 7 'llm' | 'tool', 8 cost nano-USD, 9 entry.
    private static readonly RedisScript RecordScript = new("run-record", """
        local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
        local v = redis.call('HMGET', KEYS[1], 'last', 'end')
        local last = tonumber(v[1])
        if last and now - last >= idle then
          -- Idle past its expiry (and ended by a sweep, or about to be): the same id starts a new run.
          redis.call('DEL', KEYS[1], KEYS[2])
          last = nil
          v[2] = false
        end
        if not last then redis.call('HSET', KEYS[1], 'start', now, 'user', ARGV[5], 'team', ARGV[6]) end
        if not v[2] then
          redis.call('HINCRBY', KEYS[1], ARGV[7], 1)
          redis.call('HINCRBY', KEYS[1], 'cost', ARGV[8])
        end
        if not last or now > last then redis.call('HSET', KEYS[1], 'last', now) end
        redis.call('RPUSH', KEYS[2], ARGV[9])
        redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        redis.call('PEXPIRE', KEYS[2], ARGV[2])
        return 1
        """);

    // KEYS: 1 log. ARGV: 1 now ms, 2 idle ms, 3 outcome, 4 the reporting user ('' for the idle sweep).
    // Returns {0} unknown run, {1, start, last, user, team, llm, tool, cost} ended now, {2, outcome} ended before,
    // {3} another user's run, {4} not idle (sweep only).
    private static readonly RedisScript EndScript = new("run-end", """
        local v = redis.call('HMGET', KEYS[1], 'start', 'last', 'end', 'user', 'team', 'llm', 'tool', 'cost')
        if not v[1] then return {0} end
        local idled = tonumber(ARGV[1]) - tonumber(v[2]) >= tonumber(ARGV[2])
        if ARGV[4] ~= '' then
          if idled then return {0} end
          if v[4] ~= ARGV[4] then return {3} end
        elseif not idled then
          return {4}
        end
        if v[3] then return {2, v[3]} end
        redis.call('HSET', KEYS[1], 'end', ARGV[3])
        return {1, v[1], v[2], v[4], v[5] or '', v[6] or '0', v[7] or '0', v[8] or '0'}
        """);

    // KEYS: 1 runs:active. ARGV: 1 run id, 2 cutoff ms. Removes the run unless a call made it active again.
    private static readonly RedisScript ForgetIdleScript = new("run-forget-idle", """
        local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
        if s and tonumber(s) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
        return 1
        """);

    private readonly RedisConnection _redis;
    private readonly string _prefix;
    private readonly RedisKey _active;
    private readonly long _idleMs;
    private readonly long _lifeMs;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    /// <param name="timeout">Bound of every awaited Redis call (the admin and outcome endpoints, the sweep).</param>
    public RedisRunLedger(RedisConnection redis, string keyPrefix, TimeSpan idleExpiry, TimeSpan timeout, TimeProvider time, ILogger<RedisRunLedger> logger)
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
    }

    public void Record(string runId, string user, string? team, RunCallEntry entry) =>
        _ = RecordAsync(runId, user, team, entry);

    public async ValueTask<IReadOnlyList<RunCallEntry>?> GetCallsAsync(string runId, CancellationToken cancellationToken)
    {
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
        var now = NowMs();
        var reply = (RedisResult[])(await BoundAsync(_redis.EvaluateAsync(EndScript, [LogKey(runId)], [now, _idleMs, outcome, user]), cancellationToken).ConfigureAwait(false))!;
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
        var cutoff = NowMs() - _idleMs;
        var database = await BoundAsync(_redis.DatabaseAsync(), cancellationToken).ConfigureAwait(false);
        var idle = await BoundAsync(database.SortedSetRangeByScoreAsync(_active, double.NegativeInfinity, cutoff, take: SweepBatch), cancellationToken).ConfigureAwait(false);
        List<RunSummary>? ended = null;
        foreach (var member in idle)
        {
            var runId = (string)member!;
            var now = NowMs();
            var reply = (RedisResult[])(await BoundAsync(_redis.EvaluateAsync(EndScript, [LogKey(runId)], [now, _idleMs, RunConstants.Unknown, ""]), cancellationToken).ConfigureAwait(false))!;
            var status = (long)reply[0];
            if (status == 1)
            {
                // An idle run ends at its last call, not at the sweep that noticed it.
                var last = long.Parse((string)reply[2]!, CultureInfo.InvariantCulture);
                (ended ??= []).Add(Summary(runId, RunConstants.Unknown, reply, last));
            }

            if (status != 4)
            {
                await BoundAsync(_redis.EvaluateAsync(ForgetIdleScript, [_active], [runId, cutoff]), cancellationToken).ConfigureAwait(false);
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

    private async Task RecordAsync(string runId, string user, string? team, RunCallEntry entry)
    {
        try
        {
            var now = NowMs();
            var json = JsonSerializer.Serialize(entry, RunCallEntry.Json);
            var kind = entry.Kind == RunConstants.KindTool ? RunConstants.KindTool : RunConstants.KindLlm;
            RedisValue[] args = [now, _idleMs, _lifeMs, RunConstants.CallsPerRun, user, team ?? string.Empty, kind, UsdAmount.ToNanosCeiling(entry.CostUsd ?? 0), json];
            var record = _redis.EvaluateAsync(RecordScript, [LogKey(runId), CallsKey(runId)], args);
            var database = await _redis.DatabaseAsync().ConfigureAwait(false);
            var active = database.SortedSetAddAsync(_active, runId, now);
            await Task.WhenAll(record, active).WaitAsync(_timeout).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisConnection.IsUnavailable(ex))
        {
            RunLog.RecordFailed(_logger, entry.RequestId, runId, ex.Message);
        }
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
