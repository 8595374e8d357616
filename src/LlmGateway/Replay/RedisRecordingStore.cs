using LlmGateway.Caching;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Replay;

/// <summary>
/// Recordings shared by every replica: a Redis list per run (<c>{prefix}rec:{run}</c>, RPUSH in order) with a hash
/// beside it counting its bytes (<c>…:meta</c>), both expiring Gateway:Cache:RecordingTtl after the run's last step;
/// an index sorted by last update (<c>{prefix}recs</c>) trimmed to RecordingMaxRuns, the least recently recorded
/// first; and INCR cursors for replays (<c>…:replay:{run}</c>), expiring too. Every call is bounded by the store
/// timeout (Gateway:Store:Timeout); failures surface as exceptions.
/// </summary>
/// <remarks>
/// Every key of one run (list, meta, cursors) sits in the list's hash slot (a hash tag), so each script or
/// transaction touches one slot and the store also works on a Redis Cluster. The total across runs is bounded by
/// RecordingMaxRuns × RecordingMaxRunBytes and the TTL; Redis's own maxmemory bounds the rest.
/// </remarks>
internal sealed class RedisRecordingStore : IRecordingStore
{
    // The run's bytes so far and whether it is full decide, atomically, whether the step is recorded.
    private static readonly RedisScript Append = new("recording-append", """
        local used = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
        local cost = tonumber(ARGV[2])
        if redis.call('HEXISTS', KEYS[2], 'full') == 1 or used + cost > tonumber(ARGV[3]) then
          redis.call('HSET', KEYS[2], 'full', 1)
          redis.call('PEXPIRE', KEYS[2], ARGV[4])
          redis.call('PEXPIRE', KEYS[1], ARGV[4])
          return 0
        end
        redis.call('HINCRBY', KEYS[2], 'bytes', cost)
        redis.call('PEXPIRE', KEYS[2], ARGV[4])
        local n = redis.call('RPUSH', KEYS[1], ARGV[1])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return n
        """);

    // A cursor only for a recording that is kept: a replay of anything else leaves no key behind.
    // KEYS: 1 the index. ARGV: 1 run, 2 now ms, 3 cutoff ms (entries this old or older leave). Returns the runs indexed.
    private static readonly RedisScript AddToIndex = new("recording-index", """
        redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
        return redis.call('ZCARD', KEYS[1])
        """);

    private static readonly RedisScript NextStep = new("recording-next-step", """
        if redis.call('EXISTS', KEYS[1]) == 0 then
          return 1
        end
        local step = redis.call('INCR', KEYS[2])
        redis.call('PEXPIRE', KEYS[2], ARGV[1])
        return step
        """);

    private readonly RedisConnection _redis;
    private readonly Func<CacheOptions> _options;
    private readonly string _prefix;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _timeProvider;

    public RedisRecordingStore(RedisConnection redis, Func<CacheOptions> options, string keyPrefix, TimeSpan timeout, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _redis = redis;
        _options = options;
        _prefix = keyPrefix;
        _timeout = timeout;
        _timeProvider = timeProvider;
    }

    private RedisKey IndexKey => _prefix + "recs";

    public async ValueTask<int> AppendAsync(string runId, byte[] step, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var options = _options();
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var list = ListKey(runId);
        var now = _timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        // The run's keys and the index are in different slots (in a Cluster, possibly on different nodes): two scripts,
        // sent together (both confirmed by the replicas under WaitForReplicas). Listing skips an index entry whose list is
        // gone, so a failure between them leaves no ghost.
        var appended = _redis.EvaluateAsync(Append, [list, RunKey(list, ":meta")], [step, step.Length, options.RecordingMaxRunBytes, Milliseconds(ttl)]);
        var indexed = _redis.EvaluateAsync(AddToIndex, [IndexKey], [runId, now, now - (long)ttl.TotalMilliseconds]);
        await StoreDeadline.BoundAsync(Task.WhenAll(appended, indexed), _timeout, cancellationToken).ConfigureAwait(false);

        var excess = (long)await indexed.ConfigureAwait(false) - options.RecordingMaxRuns;
        if (excess > 0)
        {
            await EvictOldestAsync(database, excess, cancellationToken).ConfigureAwait(false);
        }

        return (int)(long)await appended.ConfigureAwait(false);
    }

    public async ValueTask<byte[]?> GetStepAsync(string runId, int step, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var value = await Bound(database.ListGetByIndexAsync(ListKey(runId), step - 1), cancellationToken).ConfigureAwait(false);
        return step < 1 || value.IsNull ? null : (byte[]?)value;
    }

    public async ValueTask<IReadOnlyList<byte[]>?> GetAsync(string runId, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var values = await Bound(database.ListRangeAsync(ListKey(runId)), cancellationToken).ConfigureAwait(false);
        return values.Length == 0 ? null : Array.ConvertAll(values, static v => (byte[])v!);
    }

    public async ValueTask<IReadOnlyList<RecordingInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var entries = await Bound(database.SortedSetRangeByRankWithScoresAsync(IndexKey), cancellationToken).ConfigureAwait(false);

        // Every run's length, TTL and bytes in one pipelined round trip (the index holds at most RecordingMaxRuns).
        var details = new (Task<long> Steps, Task<TimeSpan?> Ttl, Task<RedisValue> Bytes)[entries.Length];
        for (var i = 0; i < entries.Length; i++)
        {
            var list = ListKey((string)entries[i].Element!);
            details[i] = (database.ListLengthAsync(list), database.KeyTimeToLiveAsync(list), database.HashGetAsync(RunKey(list, ":meta"), "bytes"));
        }

        var all = new Task[details.Length * 3];
        for (var i = 0; i < details.Length; i++)
        {
            (all[3 * i], all[(3 * i) + 1], all[(3 * i) + 2]) = (details[i].Steps, details[i].Ttl, details[i].Bytes);
        }

        await StoreDeadline.BoundAsync(Task.WhenAll(all), _timeout, cancellationToken).ConfigureAwait(false);
        var now = _timeProvider.GetUtcNow();
        var result = new List<RecordingInfo>();
        for (var i = 0; i < entries.Length; i++)
        {
            var (steps, ttl, bytes) = (details[i].Steps.Result, details[i].Ttl.Result, details[i].Bytes.Result);
            if (steps > 0 && ttl is { } left)
            {
                result.Add(new RecordingInfo((string)entries[i].Element!, (int)steps, DateTimeOffset.FromUnixTimeMilliseconds((long)entries[i].Score), now + left,
                    bytes.TryParse(out long count) ? count : 0));
            }
        }

        result.Sort(static (a, b) => string.CompareOrdinal(a.RunId, b.RunId));
        return result;
    }

    public async ValueTask<bool> DeleteAsync(string runId, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var list = ListKey(runId);
        var index = database.SortedSetRemoveAsync(IndexKey, runId);
        var meta = database.KeyDeleteAsync(RunKey(list, ":meta"));
        var deleted = database.KeyDeleteAsync(list);
        await StoreDeadline.BoundAsync(Task.WhenAll(index, meta, deleted), _timeout, cancellationToken).ConfigureAwait(false);
        return await deleted.ConfigureAwait(false);
    }

    public async ValueTask<int> NextReplayStepAsync(string recordedRunId, string replayRunId, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var list = ListKey(recordedRunId);
        var step = await Bound(_redis.EvaluateAsync(NextStep, [list, RunKey(list, ":replay:" + replayRunId)], [Milliseconds(ttl)]), cancellationToken).ConfigureAwait(false);
        return (int)(long)step;
    }

    /// <summary>Drops the <paramref name="count"/> least recently recorded runs from the index, with their keys.</summary>
    private async Task EvictOldestAsync(IDatabase database, long count, CancellationToken cancellationToken)
    {
        var oldest = await Bound(database.SortedSetRangeByRankAsync(IndexKey, 0, count - 1), cancellationToken).ConfigureAwait(false);
        var calls = new List<Task> { database.SortedSetRemoveAsync(IndexKey, oldest) };
        foreach (var run in oldest)
        {
            var list = ListKey((string)run!);
            calls.Add(database.KeyDeleteAsync([list, RunKey(list, ":meta")]));
        }

        await StoreDeadline.BoundAsync(Task.WhenAll(calls), _timeout, cancellationToken).ConfigureAwait(false);
    }

    private RedisKey ListKey(string runId) => _prefix + "rec:" + runId;

    /// <summary>
    /// A key in the same hash slot as the run's list: the list's own hash tag when its name has one (a prefix such as
    /// <c>{gw}:</c>), else the whole list name as the tag. Redis Cluster then serves a script over both.
    /// </summary>
    internal static RedisKey RunKey(RedisKey list, string suffix)
    {
        var name = (string)list!;
        var open = name.IndexOf('{', StringComparison.Ordinal);
        var hasTag = open >= 0 && name.IndexOf('}', open + 1) > open + 1;
        return hasTag ? name + suffix : "{" + name + "}" + suffix;
    }

    private static long Milliseconds(TimeSpan value) => Math.Max(1, (long)value.TotalMilliseconds);

    private Task<IDatabase> DatabaseAsync(CancellationToken cancellationToken) => Bound(_redis.DatabaseAsync(), cancellationToken);

    private Task<T> Bound<T>(Task<T> call, CancellationToken cancellationToken) => StoreDeadline.BoundAsync(call, _timeout, cancellationToken);
}
