using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using LlmGateway.Budgets;
using StackExchange.Redis;

namespace LlmGateway.Tools;

/// <summary>
/// The idempotency store shared by every replica through Redis: one string per key, <c>P|hash|token</c> while a call
/// is in flight (set only if absent, with a PX expiry) and <c>D|hash|response</c> once it completed (with the replay
/// TTL). Each operation is one Lua script, so claim, complete and abandon are atomic across replicas.
/// </summary>
internal sealed class RedisIdempotencyStore : IIdempotencyStore, IDisposable
{
    private static readonly RedisScript Begin = new("idempotency-begin", """
        local v = redis.call('GET', KEYS[1])
        if not v then
          redis.call('SET', KEYS[1], 'P|' .. ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3], 'NX')
          return {0}
        end
        local sep = string.find(v, '|', 3, true)
        if string.sub(v, 3, sep - 1) ~= ARGV[1] then
          return {3}
        end
        if string.sub(v, 1, 1) == 'P' then
          return {1}
        end
        return {2, string.sub(v, sep + 1)}
        """);

    private static readonly RedisScript Complete = new("idempotency-complete", """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
          return 1
        end
        return 0
        """);

    private static readonly RedisScript Abandon = new("idempotency-abandon", """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          return redis.call('DEL', KEYS[1])
        end
        return 0
        """);

    private readonly ConfigurationOptions _configuration;
    private readonly TimeSpan _timeout;
    private readonly string _prefix;
    private readonly Lock _connectLock = new();
    private Task<ConnectionMultiplexer>? _connection;
    private bool _disposed;

    public RedisIdempotencyStore(string configuration, string keyPrefix, TimeSpan operationTimeout)
    {
        ArgumentException.ThrowIfNullOrEmpty(configuration);
        ArgumentException.ThrowIfNullOrEmpty(keyPrefix);
        _configuration = ConfigurationOptions.Parse(configuration);
        _configuration.AbortOnConnectFail = false;
        _configuration.ConnectTimeout = 1000;
        _configuration.SyncTimeout = 1000;
        _configuration.ResponseTimeout = 1000;
        _configuration.KeepAlive = 5;
        _prefix = keyPrefix + "idem:";
        _timeout = operationTimeout;
    }

    public async ValueTask<IdempotencyClaim> TryBeginAsync(string key, string requestHash, TimeSpan claimTtl, CancellationToken cancellationToken = default)
    {
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var reply = (RedisResult[])(await EvaluateAsync(Begin, _prefix + key, [requestHash, token, Milliseconds(claimTtl)], cancellationToken).ConfigureAwait(false))!;
        return (long)reply[0] switch
        {
            0 => new IdempotencyClaim(IdempotencyState.Claimed, requestHash, token),
            1 => new IdempotencyClaim(IdempotencyState.InFlight, requestHash),
            2 => new IdempotencyClaim(IdempotencyState.Completed, requestHash, null, StoredToolResponse.Deserialize((byte[])reply[1]!)),
            _ => new IdempotencyClaim(IdempotencyState.KeyReused, requestHash),
        };
    }

    public async ValueTask CompleteAsync(string key, IdempotencyClaim claim, StoredToolResponse response, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        ArgumentNullException.ThrowIfNull(response);
        var payload = response.Serialize();
        var value = new byte[2 + Encoding.ASCII.GetByteCount(claim.RequestHash) + 1 + payload.Length];
        "D|"u8.CopyTo(value);
        var written = 2 + Encoding.ASCII.GetBytes(claim.RequestHash, value.AsSpan(2));
        value[written++] = (byte)'|';
        payload.CopyTo(value.AsSpan(written));
        await EvaluateAsync(Complete, _prefix + key, [Pending(claim), value, Milliseconds(ttl)], cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask AbandonAsync(string key, IdempotencyClaim claim, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(claim);
        await EvaluateAsync(Abandon, _prefix + key, [Pending(claim)], cancellationToken).ConfigureAwait(false);
    }

    public void Dispose()
    {
        Task<ConnectionMultiplexer>? connection;
        lock (_connectLock)
        {
            _disposed = true;
            connection = _connection;
            _connection = null;
        }

        if (connection is { IsCompletedSuccessfully: true })
        {
            connection.Result.Dispose();
        }
    }

    private static string Pending(IdempotencyClaim claim) => "P|" + claim.RequestHash + "|" + claim.Token;

    private static long Milliseconds(TimeSpan value) => Math.Max(1, (long)value.TotalMilliseconds);

    private async ValueTask<RedisResult> EvaluateAsync(RedisScript script, RedisKey key, RedisValue[] args, CancellationToken cancellationToken)
    {
        var call = EvaluateCoreAsync(script, [key], args);
        try
        {
            return await call.WaitAsync(_timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is TimeoutException or RedisConnectionException or SocketException or IOException)
        {
            Observe(call);
            throw new IdempotencyStoreUnavailableException($"Redis did not answer {script.Name} within {_timeout.TotalMilliseconds:0} ms: {exception.Message}", exception);
        }
        catch (OperationCanceledException)
        {
            Observe(call);
            throw;
        }
    }

    private async Task<RedisResult> EvaluateCoreAsync(RedisScript script, RedisKey[] keys, RedisValue[] args)
    {
        var database = (await Connect().ConfigureAwait(false)).GetDatabase();
        try
        {
            return await database.ScriptEvaluateAsync(script.Hash, keys, args).ConfigureAwait(false);
        }
        catch (RedisServerException exception) when (exception.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal))
        {
            return await database.ScriptEvaluateAsync(script.Source, keys, args).ConfigureAwait(false);
        }
    }

    private Task<ConnectionMultiplexer> Connect()
    {
        var connection = Volatile.Read(ref _connection);
        if (connection is not null && !connection.IsFaulted && !connection.IsCanceled)
        {
            return connection;
        }

        lock (_connectLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connection is null || _connection.IsFaulted || _connection.IsCanceled)
            {
                _connection = Task.Run(() => ConnectionMultiplexer.ConnectAsync(_configuration));
            }

            return _connection;
        }
    }

    private static void Observe(Task task) =>
        task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
}
