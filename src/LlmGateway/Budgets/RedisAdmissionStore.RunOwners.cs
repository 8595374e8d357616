using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>
/// Runs that a replica's exclusive block holds (Leases/RunBlock.cs, docs/redis-scale-out.md): every admission script
/// refuses their calls with the internal code 99, and this store asks the owner to let go (pub/sub) and tries again,
/// for at most twice the ownership's lifetime, after which a dead owner's claim has expired. It also builds the
/// per-call holds an owner's calls in flight become when the owner lets go.
/// </summary>
internal sealed partial class RedisAdmissionStore
{
    /// <summary>How long a claim or write-back keeps a run owned (the owner writes back every sweep, 250 ms).</summary>
    internal const long RunOwnershipMs = 1_000;

    /// <summary>The scripts' refusal of a call of an owned run; never a caller's answer.</summary>
    internal const AdmissionRejection RunOwned = (AdmissionRejection)99;

    private static readonly int[] OwnedBackoffMs = [1, 2, 4, 8, 16, 32, 64, 100];

    /// <summary>This store's id in the run hashes' owner and in-a-row fields: random, below 2^52 (exact as a double).</summary>
    internal long ReplicaId { get; } = Random.Shared.NextInt64(1, 1L << 52);

    /// <summary>Calls and reads that found their run owned by a replica's block and asked it to let go (tests).</summary>
    internal long RunReleasesRequested => Interlocked.Read(ref _runReleasesRequested);

    private long _runReleasesRequested;

    /// <summary>The run's hash key (its zset is this plus <c>x</c>).</summary>
    internal string RunKeyOf(string runId) => RunKey(runId);

    /// <summary>A run key's lifetime in Redis for a call held this long (as the admission scripts set it).</summary>
    internal long RunLifeMs(long ttlMs) => Math.Max(_idleMs, ttlMs) + RunKeyRefreshMs;

    /// <summary>An admitted run-only step's count of the run's admissions in a row by this replica.</summary>
    internal static long InARowOf(Reservation reservation) => reservation is RedisReservation held ? held.InARow : 0;

    /// <summary>A run-only per-call hold's run key, expiry second and field, and request hash (null for any other reservation).</summary>
    internal static (string RunKey, long ExpirySecond, string ExpiryField, string RequestHash)? DescribeRunHold(Reservation reservation) =>
        reservation is RedisReservation { RunOnly: true } held ? ((string)held.Keys[6]!, held.ExpirySecond, held.ExpiryField, held.RequestHash) : null;

    /// <summary>Asks the replica that owns the run to let go (its block closes and writes back), over the lease channel.</summary>
    internal async Task RequestRunReleaseAsync(string runId)
    {
        Interlocked.Increment(ref _runReleasesRequested);
        try
        {
            var connection = await _redis.ConnectAsync().WaitAsync(_timeout).ConfigureAwait(false);
            await connection.GetSubscriber().PublishAsync(RedisChannel.Literal(_prefix + "leases"), RunKey(runId) + " 0").WaitAsync(_timeout).ConfigureAwait(false);
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            // The owner's claim runs out within RunOwnershipMs anyway.
        }
    }

    /// <summary>
    /// Per-call holds in the run for calls an owner admitted and still has in flight, as its close writes them (the
    /// same fields a per-call admission would have written): settled or released per call from then on.
    /// </summary>
    internal Reservation AdoptRunHold(string runId, string id, long usdNanos, long tokens, long expirySecond, long admittedMs, string requestHash, long ttlMs, long step)
    {
        var keys = new RedisKey[KeyCount];
        Array.Fill(keys, (RedisKey)_unused);
        keys[6] = RunKey(runId);
        keys[7] = RunKey(runId) + "x";
        return new RedisReservation(this, id, usdNanos, tokens, expirySecond * 1000, keys)
        {
            AdmittedMs = admittedMs,
            ExpirySecond = expirySecond,
            AdmissionSecond = AdmissionConstants.Second(admittedMs),
            RequestHash = requestHash,
            ExpiryField = "x" + Number(expirySecond),
            WindowField = "w" + Number(AdmissionConstants.Second(admittedMs)),
            HasRun = true,
            RunLifeMs = RunLifeMs(ttlMs),
            RunOnly = true,
            Step = step,
        };
    }

    /// <summary>
    /// Tries again, after asking the owner to let go, while the answer says the run is owned; bounded by twice the
    /// ownership's lifetime (a dead owner's claim has expired by then).
    /// </summary>
    private async ValueTask<T> WhileRunOwnedAsync<T>(string runId, Func<ValueTask<T>> attempt, Func<T, bool> owned, CancellationToken cancellationToken)
    {
        var started = Environment.TickCount64;
        for (var i = 0; ; i++)
        {
            await WaitForRunOwnerAsync(runId, i, started, cancellationToken).ConfigureAwait(false);
            var result = await attempt().ConfigureAwait(false);
            if (!owned(result))
            {
                return result;
            }
        }
    }

    /// <summary>
    /// One round of waiting for another replica to let go of a run: gives up once a dead owner's claim has surely run
    /// out (twice the ownership's lifetime since <paramref name="startedTicks"/>), asks the owner to let go every eighth
    /// round, and backs off (1 ms up to 100 ms).
    /// </summary>
    internal async Task WaitForRunOwnerAsync(string runId, int attempt, long startedTicks, CancellationToken cancellationToken)
    {
        ThrowIfOwnerTooSlow(runId, startedTicks);
        if (attempt % 8 == 0)
        {
            await RequestRunReleaseAsync(runId).ConfigureAwait(false);
        }

        await Task.Delay(OwnedBackoffMs[Math.Min(attempt, OwnedBackoffMs.Length - 1)], cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The wait for a run's owner has lasted longer than a dead owner's claim can: the store is unavailable.</summary>
    internal static void ThrowIfOwnerTooSlow(string runId, long startedTicks)
    {
        if (Environment.TickCount64 - startedTicks > (2 * RunOwnershipMs) + 500)
        {
            throw new AdmissionStoreUnavailableException($"The run '{runId}' is held by a replica that did not let go within {2 * RunOwnershipMs} ms.", null);
        }
    }
}
