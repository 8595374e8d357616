using LlmGateway.Caching;
using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Replay;

/// <summary>
/// Recordings shared by every replica: a Redis list per run (<c>{prefix}rec:{run}</c>, RPUSH in order, expiring after
/// Gateway:Cache:RecordingTtl), an index sorted by last update (<c>{prefix}recs</c>) and INCR cursors for replays.
/// Every call is bounded by the store timeout (Gateway:Store:Timeout); failures surface as exceptions. Each command
/// or transaction touches one key, so the store also works on a Redis Cluster.
/// </summary>
internal sealed class RedisRecordingStore : IRecordingStore
{
    private readonly RedisConnection _redis;
    private readonly string _prefix;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _timeProvider;

    public RedisRecordingStore(RedisConnection redis, string keyPrefix, TimeSpan timeout, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _redis = redis;
        _prefix = keyPrefix;
        _timeout = timeout;
        _timeProvider = timeProvider;
    }

    private RedisKey Index => _prefix + "recs";

    public async ValueTask<int> AppendAsync(string runId, byte[] step, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var key = ListKey(runId);
        var now = _timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        // The list and the index are separate keys (in a Cluster, possibly on different nodes): a transaction each,
        // sent together. Listing skips an index entry whose list is gone, so a failure between them leaves no ghost.
        var transaction = database.CreateTransaction();
        var length = transaction.ListRightPushAsync(key, step);
        _ = transaction.KeyExpireAsync(key, ttl);
        var index = database.CreateTransaction();
        _ = index.SortedSetAddAsync(Index, runId, now);
        _ = index.SortedSetRemoveRangeByScoreAsync(Index, double.NegativeInfinity, now - ttl.TotalMilliseconds);
        await Bound(Task.WhenAll(transaction.ExecuteAsync(), index.ExecuteAsync()), cancellationToken).ConfigureAwait(false);
        return (int)await length.ConfigureAwait(false);
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
        var entries = await Bound(database.SortedSetRangeByRankWithScoresAsync(Index), cancellationToken).ConfigureAwait(false);
        var list = new List<RecordingInfo>();
        foreach (var entry in entries)
        {
            var runId = (string)entry.Element!;
            var key = ListKey(runId);
            var steps = await Bound(database.ListLengthAsync(key), cancellationToken).ConfigureAwait(false);
            var ttl = await Bound(database.KeyTimeToLiveAsync(key), cancellationToken).ConfigureAwait(false);
            if (steps > 0 && ttl is { } left)
            {
                list.Add(new RecordingInfo(runId, (int)steps, DateTimeOffset.FromUnixTimeMilliseconds((long)entry.Score), _timeProvider.GetUtcNow() + left));
            }
        }

        list.Sort(static (a, b) => string.CompareOrdinal(a.RunId, b.RunId));
        return list;
    }

    public async ValueTask<bool> DeleteAsync(string runId, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        await Bound(database.SortedSetRemoveAsync(Index, runId), cancellationToken).ConfigureAwait(false);
        return await Bound(database.KeyDeleteAsync(ListKey(runId)), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<int> NextReplayStepAsync(string recordedRunId, string replayRunId, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        RedisKey key = _prefix + "replay:" + recordedRunId + ":" + replayRunId;
        var transaction = database.CreateTransaction();
        var step = transaction.StringIncrementAsync(key);
        _ = transaction.KeyExpireAsync(key, ttl);
        await Bound(transaction.ExecuteAsync(), cancellationToken).ConfigureAwait(false);
        return (int)await step.ConfigureAwait(false);
    }

    private RedisKey ListKey(string runId) => _prefix + "rec:" + runId;

    private Task<IDatabase> DatabaseAsync(CancellationToken cancellationToken) => Bound(_redis.DatabaseAsync(), cancellationToken);

    private Task<T> Bound<T>(Task<T> call, CancellationToken cancellationToken) => StoreDeadline.BoundAsync(call, _timeout, cancellationToken);
}
