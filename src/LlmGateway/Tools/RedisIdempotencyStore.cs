using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using LlmGateway.Budgets;
using LlmGateway.Redis;
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

    private readonly RedisConnection _redis;
    private readonly bool _ownsConnection;
    private readonly TimeSpan _timeout;
    private readonly string _prefix;

    /// <summary>A store with a connection of its own (tests).</summary>
    public RedisIdempotencyStore(string configuration, string keyPrefix, TimeSpan operationTimeout)
        : this(new RedisConnection(configuration, TimeSpan.FromSeconds(1)), keyPrefix, operationTimeout, ownsConnection: true)
    {
    }

    /// <summary>A store on the gateway's shared connection.</summary>
    public RedisIdempotencyStore(RedisConnection redis, string keyPrefix, TimeSpan operationTimeout, bool ownsConnection = false)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentException.ThrowIfNullOrEmpty(keyPrefix);
        _redis = redis;
        _ownsConnection = ownsConnection;
        _prefix = keyPrefix + "idem:";
        _timeout = operationTimeout;
    }

    /// <remarks>
    /// A claim whose caller gave up (Redis slower than the store timeout, a replica that did not acknowledge it under
    /// <c>WaitForReplicas</c>, the client gone) is given back when Redis's reply shows it was taken: its caller was told
    /// the store is unavailable and ran nothing, so a retry with the same key must execute, not be refused as in
    /// progress until the claim's TTL (30 s and more).
    /// </remarks>
    public async ValueTask<IdempotencyClaim> TryBeginAsync(string key, string requestHash, TimeSpan claimTtl, CancellationToken cancellationToken = default)
    {
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var storeKey = _prefix + key;
        var pending = Pending(requestHash, token);
        var reply = (RedisResult[])(await EvaluateAsync(Begin, storeKey, [requestHash, token, Milliseconds(claimTtl)], cancellationToken,
            late => (long)((RedisResult[])late!)[0] == 0 ? _redis.EvaluateAsync(Abandon, [storeKey], [pending]) : Task.CompletedTask).ConfigureAwait(false))!;
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
        if (_ownsConnection)
        {
            _redis.Dispose();
        }
    }

    private static string Pending(IdempotencyClaim claim) => Pending(claim.RequestHash, claim.Token!);

    private static string Pending(string requestHash, string token) => "P|" + requestHash + "|" + token;

    private static long Milliseconds(TimeSpan value) => Math.Max(1, (long)value.TotalMilliseconds);

    /// <param name="whenGivenUp">What to do with the script's reply if it comes (or came, unreplicated) after its caller gave up.</param>
    private async ValueTask<RedisResult> EvaluateAsync(RedisScript script, RedisKey key, RedisValue[] args, CancellationToken cancellationToken, Func<RedisResult, Task>? whenGivenUp = null)
    {
        var call = _redis.EvaluateAsync(script, [key], args);
        try
        {
            return await call.WaitAsync(_timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            GiveUp(call, whenGivenUp);
            throw new IdempotencyStoreUnavailableException($"Redis did not answer {script.Name} within {_timeout.TotalMilliseconds:0} ms: {exception.Message}", exception);
        }
        catch (OperationCanceledException)
        {
            GiveUp(call, whenGivenUp);
            throw;
        }
    }

    private static void GiveUp(Task<RedisResult> call, Func<RedisResult, Task>? whenGivenUp)
    {
        if (whenGivenUp is null)
        {
            RedisConnection.Observe(call);
        }
        else
        {
            RedisConnection.WhenAnswered(call, whenGivenUp);
        }
    }
}
