using System.Collections.Concurrent;
using System.Text.Json;
using LlmGateway.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace LlmGateway.Approvals;

/// <summary>
/// Approvals shared by every replica through Redis. One hash per binding, <c>{prefix}{ap:&lt;slot&gt;}</c> (hash-tagged,
/// so it stays on one Redis Cluster slot; every script touches that one key only), holding the live approval of the
/// binding: id, state (P, A, D), the request as JSON, and the decision. Opening and deciding are one Lua script each,
/// so two replicas never open two approvals for one binding or decide one twice. A sorted set
/// (<c>{prefix}ap:pending</c>, by creation time) lists what is pending; it is kept with single-key commands and
/// repaired on every listing. A decision is published on <c>{prefix}ap:decided</c>: held calls on every replica wake at
/// once, and read their approval again every 0.5 s anyway, so a lost message or a replica that went down after
/// deciding delays nothing past that.
/// </summary>
internal sealed class RedisApprovalStore : IApprovalStore, IDisposable
{
    private static readonly RedisScript Open = new("approval-open", """
        local id = redis.call('HGET', KEYS[1], 'id')
        if id and redis.call('HGET', KEYS[1], 'bind') == ARGV[1] then
          local all = redis.call('HGETALL', KEYS[1])
          table.insert(all, 1, 0)
          return all
        end
        redis.call('DEL', KEYS[1])
        redis.call('HSET', KEYS[1], 'id', ARGV[2], 'bind', ARGV[1], 'state', 'P', 'req', ARGV[3])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return {1}
        """);

    // KEYS: 1 the pending index. ARGV: 1 id, 2 created ms. Idempotent (NX).
    private static readonly RedisScript Index = new("approval-index", """
        return redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
        """);

    private static readonly RedisScript Decide = new("approval-decide", """
        if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
          return {0}
        end
        if redis.call('HGET', KEYS[1], 'state') ~= 'P' then
          local all = redis.call('HGETALL', KEYS[1])
          table.insert(all, 1, 1)
          return all
        end
        redis.call('HSET', KEYS[1], 'state', ARGV[2], 'at', ARGV[3], 'by', ARGV[4], 'reason', ARGV[5], 'code', ARGV[6])
        redis.call('PEXPIRE', KEYS[1], ARGV[7])
        local all = redis.call('HGETALL', KEYS[1])
        table.insert(all, 1, 2)
        return all
        """);

    private readonly RedisConnection _redis;
    private readonly bool _ownsConnection;
    private readonly string _prefix;
    private readonly TimeSpan _timeout;
    private readonly RedisKey _pending;
    private readonly RedisChannel _decided;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _waiters = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _subscribing = new(1, 1);
    private volatile bool _subscribed;

    /// <summary>A store with a connection of its own (tests).</summary>
    public RedisApprovalStore(string configuration, string keyPrefix, TimeSpan operationTimeout, ILogger logger)
        : this(new RedisConnection(configuration, TimeSpan.FromSeconds(1)), keyPrefix, operationTimeout, logger, ownsConnection: true)
    {
    }

    /// <summary>A store on the gateway's shared connection.</summary>
    public RedisApprovalStore(RedisConnection redis, string keyPrefix, TimeSpan operationTimeout, ILogger logger, bool ownsConnection = false)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentException.ThrowIfNullOrEmpty(keyPrefix);
        _redis = redis;
        _ownsConnection = ownsConnection;
        _prefix = keyPrefix;
        _timeout = operationTimeout;
        _pending = keyPrefix + "ap:pending";
        _decided = RedisChannel.Literal(keyPrefix + "ap:decided");
        _logger = logger;
    }

    public async ValueTask<ApprovalOpenResult> OpenAsync(ApprovalRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var id = ApprovalIds.New(request.Binding);
        var json = JsonSerializer.SerializeToUtf8Bytes(request);
        var reply = (RedisResult[])(await RunAsync(
            _redis.EvaluateAsync(Open, [Key(ApprovalIds.SlotOfBinding(request.Binding))], [request.Binding, id, json, Milliseconds(request.PendingTtl)]), "open", cancellationToken).ConfigureAwait(false))!;
        var created = (long)reply[0] == 1;
        var record = created ? new ApprovalRecord { Id = id, State = ApprovalState.Pending, Request = request } : Parse(reply, 1)!;
        if (record.State == ApprovalState.Pending)
        {
            // Single-key and idempotent: a replica that died between the two scripts is repaired by the next repeat. A
            // script, so WaitForReplicas confirms it: a fail-over must not lose the entry the approvers list.
            await RunAsync(_redis.EvaluateAsync(Index, [_pending], [record.Id, record.CreatedAt.ToUnixTimeMilliseconds()]), "index", cancellationToken).ConfigureAwait(false);
        }

        return new ApprovalOpenResult(record, created);
    }

    public async ValueTask<ApprovalRecord?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        if (ApprovalIds.Slot(id) is not { } slot)
        {
            return null;
        }

        var database = await _redis.DatabaseAsync().ConfigureAwait(false);
        var fields = await RunAsync(database.HashGetAllAsync(Key(slot)), "get", cancellationToken).ConfigureAwait(false);
        var record = Parse(fields);
        return record?.Id == id ? record : null;
    }

    public async ValueTask<ApprovalListing> ListPendingAsync(int max, CancellationToken cancellationToken = default)
    {
        var database = await _redis.DatabaseAsync().ConfigureAwait(false);
        var ids = await RunAsync(database.SortedSetRangeByRankAsync(_pending, 0, max - 1), "list", cancellationToken).ConfigureAwait(false);
        var reads = new Task<HashEntry[]>[ids.Length];
        for (var i = 0; i < ids.Length; i++)
        {
            reads[i] = ApprovalIds.Slot(ids[i].ToString()) is { } slot ? database.HashGetAllAsync(Key(slot)) : Task.FromResult(Array.Empty<HashEntry>());
        }

        await RunAsync(Task.WhenAll(reads), "list", cancellationToken).ConfigureAwait(false);
        var pending = new List<ApprovalRecord>(ids.Length);
        var expired = new List<string>();
        for (var i = 0; i < ids.Length; i++)
        {
            var id = ids[i].ToString();
            var record = Parse(reads[i].Result);
            if (record?.Id == id && record.State == ApprovalState.Pending)
            {
                pending.Add(record);
                continue;
            }

            // Decided (its index entry outlived the decision) or gone: expired undecided, counted by the one replica that removes it.
            var removed = await RunAsync(database.SortedSetRemoveAsync(_pending, id), "list", cancellationToken).ConfigureAwait(false);
            if (removed && (record is null || record.Id != id))
            {
                expired.Add(record?.Request.Tool ?? "unknown");
            }
        }

        return new ApprovalListing(pending, expired);
    }

    public async ValueTask<ApprovalDecisionResult> DecideAsync(ApprovalDecision decision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(decision);
        if (ApprovalIds.Slot(decision.Id) is not { } slot)
        {
            return new ApprovalDecisionResult(ApprovalDecisionOutcome.NotFound, null);
        }

        var current = await GetAsync(decision.Id, cancellationToken).ConfigureAwait(false);
        var ttl = current?.Request.DecisionTtl ?? TimeSpan.FromMinutes(1);
        var reply = (RedisResult[])(await RunAsync(_redis.EvaluateAsync(Decide, [Key(slot)],
        [
            decision.Id, decision.Approve ? "A" : "D", decision.Now.ToUnixTimeMilliseconds(), decision.DecidedBy, decision.Reason,
            decision.DenialCode ?? string.Empty, Milliseconds(ttl),
        ]), "decide", cancellationToken).ConfigureAwait(false))!;
        var outcome = (long)reply[0] switch
        {
            0 => ApprovalDecisionOutcome.NotFound,
            1 => ApprovalDecisionOutcome.AlreadyDecided,
            _ => ApprovalDecisionOutcome.Decided,
        };
        var record = outcome == ApprovalDecisionOutcome.NotFound ? null : Parse(reply, 1);
        if (outcome == ApprovalDecisionOutcome.Decided)
        {
            var database = await _redis.DatabaseAsync().ConfigureAwait(false);
            await RunAsync(database.SortedSetRemoveAsync(_pending, decision.Id), "index", cancellationToken).ConfigureAwait(false);
            await RunAsync(database.PublishAsync(_decided, decision.Id), "publish", cancellationToken).ConfigureAwait(false);
        }

        return new ApprovalDecisionResult(outcome, record);
    }

    public async Task WaitForChangeAsync(string id, TimeSpan maxWait, CancellationToken cancellationToken = default)
    {
        await SubscribeAsync().ConfigureAwait(false);
        var waiter = _waiters.GetOrAdd(id, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        try
        {
            await waiter.Task.WaitAsync(maxWait, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Forget the waiter unless a notification replaced it meanwhile; other waiters of the id fall back to polling.
            _waiters.TryRemove(new KeyValuePair<string, TaskCompletionSource>(id, waiter));
        }
    }

    public void Dispose()
    {
        _subscribing.Dispose();
        if (_ownsConnection)
        {
            _redis.Dispose();
        }
    }

    private async ValueTask SubscribeAsync()
    {
        if (_subscribed)
        {
            return;
        }

        await _subscribing.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_subscribed)
            {
                var connection = await _redis.ConnectAsync().ConfigureAwait(false);
                await connection.GetSubscriber().SubscribeAsync(_decided, (_, message) =>
                {
                    if (_waiters.TryRemove(message.ToString(), out var waiter))
                    {
                        waiter.TrySetResult();
                    }
                }).WaitAsync(_timeout + _timeout).ConfigureAwait(false);
                _subscribed = true;
            }
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            ApprovalLog.SubscriptionFailed(_logger, exception.Message);
        }
        finally
        {
            _subscribing.Release();
        }
    }

    private RedisKey Key(string slot) => _prefix + "{ap:" + slot + "}";

    private static long Milliseconds(TimeSpan value) => Math.Max(1, (long)value.TotalMilliseconds);

    private static ApprovalRecord? Parse(RedisResult[] reply, int offset)
    {
        var fields = new HashEntry[(reply.Length - offset) / 2];
        for (var i = 0; i < fields.Length; i++)
        {
            fields[i] = new HashEntry((RedisValue)reply[offset + 2 * i], (RedisValue)reply[offset + 2 * i + 1]);
        }

        return Parse(fields);
    }

    private static ApprovalRecord? Parse(HashEntry[] fields)
    {
        if (fields.Length == 0)
        {
            return null;
        }

        var values = fields.ToDictionary(f => f.Name.ToString(), f => f.Value, StringComparer.Ordinal);
        if (!values.TryGetValue("id", out var id) || !values.TryGetValue("req", out var json))
        {
            return null;
        }

        var request = JsonSerializer.Deserialize<ApprovalRequest>((byte[])json!)!;
        var state = values.GetValueOrDefault("state").ToString() switch
        {
            "A" => ApprovalState.Approved,
            "D" => ApprovalState.Denied,
            _ => ApprovalState.Pending,
        };
        var code = values.GetValueOrDefault("code").ToString();
        return new ApprovalRecord
        {
            Id = id.ToString(),
            State = state,
            Request = request,
            DecidedAt = values.TryGetValue("at", out var at) ? DateTimeOffset.FromUnixTimeMilliseconds((long)at) : null,
            DecidedBy = values.TryGetValue("by", out var by) ? by.ToString() : null,
            Reason = values.TryGetValue("reason", out var reason) ? reason.ToString() : null,
            DenialCode = string.IsNullOrEmpty(code) ? null : code,
        };
    }

    private async Task<T> RunAsync<T>(Task<T> call, string operation, CancellationToken cancellationToken)
    {
        try
        {
            return await call.WaitAsync(_timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            RedisConnection.Observe(call);
            throw new ApprovalStoreUnavailableException($"Redis did not answer approval {operation} within {_timeout.TotalMilliseconds:0} ms: {exception.Message}", exception);
        }
        catch (OperationCanceledException)
        {
            RedisConnection.Observe(call);
            throw;
        }
    }

    private async Task RunAsync(Task call, string operation, CancellationToken cancellationToken)
    {
        try
        {
            await call.WaitAsync(_timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            RedisConnection.Observe(call);
            throw new ApprovalStoreUnavailableException($"Redis did not answer approval {operation} within {_timeout.TotalMilliseconds:0} ms: {exception.Message}", exception);
        }
    }
}
