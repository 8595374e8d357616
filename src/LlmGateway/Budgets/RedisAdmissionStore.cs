using System.Buffers.Binary;
using System.Collections.Concurrent;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>
/// The admission store shared by every gateway replica: one Lua script per operation on a single Redis (one round
/// trip, atomic), one per scope and hash slot on a Redis Cluster (see RedisAdmissionStore.Scoped.cs), so N replicas
/// enforce one limit rather than N. Same semantics as <see cref="InMemoryAdmissionStore"/>;
/// the scripts and data layout are described in <see cref="RedisAdmissionScripts"/>.
/// </summary>
/// <remarks>
/// One multiplexer, connected lazily with AbortOnConnectFail=false so it keeps reconnecting by itself. Every call
/// is bounded by <see cref="AdmissionStoreOptions.OperationTimeout"/> (real time, whatever the injected clock says)
/// and reports Redis trouble as <see cref="AdmissionStoreUnavailableException"/>.
/// </remarks>
internal sealed partial class RedisAdmissionStore : IAdmissionStore, IDisposable
{
    private const int KeyCount = 9;

    /// <summary>At most this many settlements in one script (9 keys each).</summary>
    private const int MaxFinishBatch = 64;

    /// <summary>At most this many admissions in one script (9 keys each).</summary>
    private const int MaxReserveBatch = 64;

    /// <summary>At most this many run-only admissions and finishes in one script (2 keys each).</summary>
    private const int MaxRunStepBatch = 128;

    /// <summary>A batch's reply when each call carries its own answer (<see cref="PendingCall.Answer"/>).</summary>
    private static readonly RedisResult NoBatchReply = RedisResult.Create(RedisValue.Null);

    /// <summary>Numbers the reserve script answers per admission.</summary>
    private const int ReserveReplyLength = RedisAdmissionScripts.ReserveReplyLength;

    /// <summary>
    /// A queued call's backstop, in store timeouts: the batch ahead, its own, and on a cluster the undo of refused
    /// steps and one round of calls decided again.
    /// </summary>
    private const int QueuedBound = 4;

    /// <summary>Run keys' Redis lifetime is pushed forward at most this often (caller time); it always exceeds the idle expiry.</summary>
    private const long RunKeyRefreshMs = 60_000;

    private readonly RedisConnection _redis;
    private readonly ILogger _logger;
    private readonly bool _ownsConnection;
    private readonly TimeProvider _timeProvider;
    private readonly TimeSpan _timeout;
    private readonly string _prefix;
    private readonly string _unused;
    private readonly long _idleMs;
    private readonly long _retentionMs;
    private readonly long _inFlightRetryMs;
    private readonly string _idPrefix;
    private readonly ConcurrentDictionary<string, SubjectKeys> _users = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SubjectKeys> _teams = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SubjectKeys> _keys = new(StringComparer.Ordinal);
    private readonly ScriptGroupCommit<PendingCall> _reserves;
    private readonly ScriptGroupCommit<PendingCall> _finishes;
    private readonly ScriptGroupCommit<PendingCall> _runStepQueue;
    private long _reserveScripts;
    private FieldNameCache? _expiryField;
    private FieldNameCache? _windowField;
    private long _sequence;

    /// <summary>A store with a connection of its own (tests, tools).</summary>
    public RedisAdmissionStore(string configuration, AdmissionStoreOptions options, TimeProvider timeProvider)
        : this(new RedisConnection(configuration, options?.ConnectTimeout ?? TimeSpan.FromSeconds(1)), options!, timeProvider, ownsConnection: true)
    {
    }

    /// <summary>A store on the gateway's shared connection.</summary>
    public RedisAdmissionStore(RedisConnection redis, AdmissionStoreOptions options, TimeProvider timeProvider, bool ownsConnection = false, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        options.Validate();
        _redis = redis;
        _logger = logger ?? NullLogger.Instance;
        _ownsConnection = ownsConnection;
        _timeProvider = timeProvider;
        _timeout = options.OperationTimeout;
        _prefix = options.KeyPrefix;
        _unused = _prefix + "_";
        _idleMs = (long)options.RunIdleExpiry.TotalMilliseconds;
        _retentionMs = (long)options.PeriodRetention.TotalMilliseconds;
        _inFlightRetryMs = (long)options.InFlightRetryAfter.TotalMilliseconds;
        _idPrefix = ReservationIds.NewPrefix();
        _reserves = new ScriptGroupCommit<PendingCall>(MaxReserveBatch, SendReservesAsync);
        _finishes = new ScriptGroupCommit<PendingCall>(MaxFinishBatch, SendFinishesAsync);
        _runStepQueue = new ScriptGroupCommit<PendingCall>(MaxRunStepBatch, SendRunStepsAsync);
    }

    /// <summary>Reserve scripts sent so far (each carries one or more admissions); for tests of the batching.</summary>
    internal long ReserveScripts => Interlocked.Read(ref _reserveScripts);

    public ValueTask<AdmissionResult> ReserveAsync(AdmissionRequest request, CancellationToken cancellationToken = default) =>
        ReserveCoreAsync(request, runOnly: false, cancellationToken);

    /// <summary>
    /// Decides only the call's run (halt, deadline, loop guard, budget, in-flight cap), in one single-slot step: for a
    /// store that decided the user's, team's and key's scopes itself (leases). Its settlement or release touches only the
    /// run as well. The reply's user and team fractions are 0 and it has no rate-window figures.
    /// </summary>
    internal ValueTask<AdmissionResult> ReserveRunAsync(AdmissionRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentException.ThrowIfNullOrEmpty(request.RunId, nameof(request));
        return ReserveCoreAsync(request, runOnly: true, cancellationToken);
    }

    private async ValueTask<AdmissionResult> ReserveCoreAsync(AdmissionRequest request, bool runOnly, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var result = await ReserveOnceAsync(request, runOnly, cancellationToken).ConfigureAwait(false);
        // A run-only step answers "owned" to its caller (the leased store, which may own the run itself).
        return runOnly || result.Rejection != RunOwned
            ? result
            : await WhileRunOwnedAsync(request.RunId!, () => ReserveOnceAsync(request, runOnly, cancellationToken), static r => r.Rejection == RunOwned, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<AdmissionResult> ReserveOnceAsync(AdmissionRequest request, bool runOnly, CancellationToken cancellationToken)
    {
        var now = NowMs();
        var usd = UsdAmount.ToNanosCeiling(request.ReserveUsd);
        var tokens = Math.Max(0, request.ReserveTokens);
        var ttlMs = Math.Max(1, (long)request.ReservationTtl.TotalMilliseconds);
        var expirySecond = AdmissionConstants.ExpirySecond(now + ttlMs);
        var hash = request.RequestHash ?? string.Empty;
        var id = ReservationIds.Format(_idPrefix, Interlocked.Increment(ref _sequence));

        var user = Subject(_users, "u", request.User);
        var userPeriod = user.GetPeriod(request.UserBudgetPeriod, now);
        var teamPeriod = request.Team is { } team ? Subject(_teams, "t", team).GetPeriod(request.TeamBudgetPeriod, now) : null;
        var userRates = request.UserRateLimits;
        var keyRates = request.KeyRateLimits;
        var key = request.KeyId is { } keyId && !keyRates.IsUnlimited ? Subject(_keys, "k", keyId) : null;
        var hasUserRate = !userRates.IsUnlimited;

        var keys = new RedisKey[KeyCount];
        keys[0] = user.Control;
        keys[1] = user.InFlight;
        keys[2] = userPeriod.Budget;
        keys[3] = userPeriod.Reservations;
        keys[4] = teamPeriod?.Budget ?? _unused;
        keys[5] = teamPeriod?.Reservations ?? _unused;
        var runId = request.RunId;
        keys[6] = runId is null ? _unused : RunKey(runId);
        keys[7] = runId is null ? _unused : RunKey(runId) + "x";
        keys[8] = key?.RateWindow ?? _unused;
        var runLifeMs = Math.Max(_idleMs, ttlMs) + RunKeyRefreshMs;

        var deadlineMs = Math.Max(0, (long)request.RunDeadline.TotalMilliseconds);
        // The numbers travel packed (see RedisAdmissionScripts.Reserve for the order): one argument, no parsing in Lua.
        ReadOnlySpan<double> numbers =
        [
            now, expirySecond, usd, tokens,
            Flag(teamPeriod is not null), Flag(runId is not null), Flag(hasUserRate), Flag(key is not null),
            UsdAmount.ToNanosFloor(request.UserBudget.Usd), Math.Max(0, request.UserBudget.Tokens), Math.Max(0, request.UserBudget.Calls), userPeriod.EndMs,
            UsdAmount.ToNanosFloor(request.TeamBudget.Usd), Math.Max(0, request.TeamBudget.Tokens), Math.Max(0, request.TeamBudget.Calls), teamPeriod?.EndMs ?? 0,
            UsdAmount.ToNanosFloor(request.RunBudget.Usd), Math.Max(0, request.RunBudget.Tokens), Math.Max(0, request.RunBudget.Calls),
            deadlineMs, Math.Max(0, request.RunMaxRepeats), Math.Max(0, request.RunMaxInFlight), Math.Max(0, request.UserMaxInFlight),
            Math.Max(0, userRates.RequestsPerMinute), Math.Max(0, userRates.TokensPerMinute),
            Math.Max(0, keyRates.RequestsPerMinute), Math.Max(0, keyRates.TokensPerMinute),
            _retentionMs, _idleMs, _inFlightRetryMs, runLifeMs, RunKeyRefreshMs,
        ];
        var expiryField = FieldName(ref _expiryField, 'x', expirySecond);
        var windowField = FieldName(ref _windowField, 'w', AdmissionConstants.Second(now));
        var held = new RedisReservation(this, id, usd, tokens, expirySecond * 1000, keys)
        {
            AdmittedMs = now,
            ExpirySecond = expirySecond,
            AdmissionSecond = AdmissionConstants.Second(now),
            RequestHash = hash,
            ExpiryField = expiryField,
            WindowField = windowField,
            HasTeam = teamPeriod is not null,
            HasRun = runId is not null,
            HasUserRate = hasUserRate,
            HasKeyRate = key is not null,
            UserPeriodEndMs = userPeriod.EndMs,
            TeamPeriodEndMs = teamPeriod?.EndMs ?? 0,
            RunLifeMs = runLifeMs,
            RunOnly = runOnly,
        };
        var item = new PendingCall(held, Pack(numbers), request.User);
        RedisResult batchReply;
        try
        {
            var queue = runOnly ? _runStepQueue : _reserves;
            batchReply = await BoundAsync(queue.Enqueue(item), RedisAdmissionScripts.Reserve.Name, cancellationToken, queued: true).ConfigureAwait(false);
        }
        catch
        {
            // Not sent yet: it never will be (nobody would settle what it holds). Already sent: given back if admitted.
            item.Abandoned = true;
            ReleaseIfAdmittedLate(item);
            throw;
        }

        ReadOnlySpan<long> reply = item.Answer ?? ((long[])batchReply!).AsSpan(item.Index * ReserveReplyLength, ReserveReplyLength);
        if (item.Failure is { } failure)
        {
            // On a cluster one scope's node could not decide (the others' holds were given back).
            throw new AdmissionStoreUnavailableException($"Redis could not decide {RedisAdmissionScripts.ReserveScoped.Name}: {failure.Message}", failure);
        }

        var admitted = reply[0] == 1;
        var rejection = (AdmissionRejection)reply[1];
        var limit = (AdmissionLimit)reply[3];
        var fractions = new BudgetFractions(
            Fraction(reply[6..9], request.UserBudget),
            teamPeriod is null ? 0 : Fraction(reply[9..12], request.TeamBudget),
            runId is null ? 0 : Fraction(reply[12..15], request.RunBudget));
        // x-ratelimit-* values: after the call took its place when admitted, as they were when a rate limit refused it.
        RateLimitSnapshot requests = default, tokenSnapshot = default;
        if (admitted || (rejection == AdmissionRejection.RateLimitExceeded && limit is AdmissionLimit.RequestsPerMinute or AdmissionLimit.TokensPerMinute))
        {
            if (hasUserRate)
            {
                Window(ref requests, ref tokenSnapshot, reply[15], reply[16], reply[17], userRates, admitted, tokens, now);
            }

            if (key is not null)
            {
                Window(ref requests, ref tokenSnapshot, reply[18], reply[19], reply[20], keyRates, admitted, tokens, now);
            }
        }

        if (admitted)
        {
            held.Step = reply[21];
            held.InARow = item.InARow;
            return new AdmissionResult(held, AdmissionRejection.None, AdmissionScope.None, AdmissionLimit.None, 0, null, requests, tokenSnapshot, fractions);
        }

        var value = reply[4];
        var retry = reply[5];
        return new AdmissionResult(
            null,
            rejection,
            (AdmissionScope)reply[2],
            limit,
            limit switch
            {
                AdmissionLimit.Usd => UsdAmount.ToUsd(value),
                AdmissionLimit.Deadline => value / 1000m,
                _ => value,
            },
            retry >= 0 ? TimeSpan.FromMilliseconds(retry) : null,
            requests,
            tokenSnapshot,
            fractions);
    }

    public async ValueTask<bool> PingAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            // The connection admissions use: what this store's health means.
            await BoundAsync(PingCoreAsync(), "ping", cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (AdmissionStoreUnavailableException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        _stopping.Cancel();
        if (_ownsConnection)
        {
            _redis.Dispose();
        }
    }

    private static double Flag(bool value) => value ? 1 : 0;

    /// <summary>
    /// A seconds field's name (<c>x1763712000</c>), built once per second rather than per call: Lua formatting a number
    /// costs Redis ~0.5 µs, which every replica's calls share.
    /// </summary>
    private static string FieldName(ref FieldNameCache? cache, char tag, long second)
    {
        var current = Volatile.Read(ref cache);
        if (current is not null && current.Second == second)
        {
            return current.Name;
        }

        var created = new FieldNameCache(second, tag + second.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Volatile.Write(ref cache, created);
        return created.Name;
    }

    /// <summary>
    /// Numbers for a script as little-endian doubles, which Redis's Lua <c>struct.unpack</c> reads without parsing text
    /// (integers below 2^53 — milliseconds, nano-dollars, tokens — are exact).
    /// </summary>
    private static byte[] Pack(ReadOnlySpan<double> numbers)
    {
        var bytes = new byte[numbers.Length * sizeof(double)];
        for (var i = 0; i < numbers.Length; i++)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * sizeof(double)), numbers[i]);
        }

        return bytes;
    }

    /// <summary>
    /// One reserve script for a batch of admissions (a single Redis; on a cluster, one per hash slot: see
    /// <see cref="SendScopedReservesAsync"/>). The script admits them in order, each exactly as its own script would,
    /// so no limit is looser for being batched.
    /// </summary>
    private async Task<RedisResult> SendReservesAsync(List<PendingCall> batch)
    {
        Interlocked.Increment(ref _reserveScripts);
        if (await IsClusterAsync().ConfigureAwait(false))
        {
            return await SendScopedReservesAsync(batch).ConfigureAwait(false);
        }

        var keys = new RedisKey[batch.Count * KeyCount];
        var args = new RedisValue[batch.Count * 5];
        for (var i = 0; i < batch.Count; i++)
        {
            var item = batch[i];
            item.Held.Keys.CopyTo(keys, i * KeyCount);
            args[5 * i] = item.Numbers;
            args[(5 * i) + 1] = item.Held.RequestHash;
            args[(5 * i) + 2] = item.User;
            args[(5 * i) + 3] = item.Held.ExpiryField;
            args[(5 * i) + 4] = item.Held.WindowField;
        }

        // Bounded from when it is sent: a batch stuck on a dead connection must not hold back the next ones. Timed out,
        // it may still run (Redis slow, not gone): what it admits then is given back (RedisAdmissionStore.LateReplies.cs).
        var call = _redis.EvaluateAsync(RedisAdmissionScripts.Reserve, keys, args);
        RedisResult reply;
        try
        {
            reply = await call.WaitAsync(_timeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            ReleaseWhenAnswered(call, batch);
            throw;
        }

        return reply.Length == batch.Count * ReserveReplyLength
            ? reply
            : throw new RedisException($"The reserve script answered {reply.Length} numbers for {batch.Count} admissions.");
    }

    /// <summary>Key names of a user, team or gateway key; cached, as those come from the config and are few.</summary>
    private SubjectKeys Subject(ConcurrentDictionary<string, SubjectKeys> cache, string tag, string name) =>
        cache.TryGetValue(name, out var keys) ? keys : cache.GetOrAdd(name, new SubjectKeys(_prefix, tag, name));

    private RedisReservation Own(Reservation reservation)
    {
        ArgumentNullException.ThrowIfNull(reservation);
        if (reservation is not RedisReservation held || !ReferenceEquals(held.Store, this))
        {
            throw new ArgumentException("The reservation was made by another store.", nameof(reservation));
        }

        return held;
    }

    private async Task<bool> PingCoreAsync()
    {
        await _redis.PingAsync().ConfigureAwait(false);
        return true;
    }

    private long NowMs() => _timeProvider.GetUtcNow().ToUnixTimeMilliseconds();

    private ValueTask<RedisResult> EvaluateAsync(RedisScript script, RedisKey[] keys, RedisValue[] args, CancellationToken cancellationToken) =>
        BoundAsync(_redis.EvaluateAsync(script, keys, args), script.Name, cancellationToken);

    private static string Number(long value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Waits for a Redis call at most the operation timeout (real time). The multiplexer has its own timeouts, but a
    /// call queued while it reconnects could wait longer: no request may hang on the store. A group-committed call
    /// (<paramref name="queued"/>) is bounded by its batch, from when the batch is sent: it is not refused for the time
    /// it waited behind the batch in flight (itself bounded); the wait here is only a backstop.
    /// </summary>
    private async ValueTask<T> BoundAsync<T>(Task<T> call, string operation, CancellationToken cancellationToken, bool queued = false)
    {
        try
        {
            return await call.WaitAsync(queued ? _timeout * QueuedBound : _timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            RedisConnection.Observe(call);
            throw new AdmissionStoreUnavailableException($"Redis did not answer {operation} within {_timeout.TotalMilliseconds:0} ms: {exception.Message}", exception);
        }
        catch (OperationCanceledException)
        {
            RedisConnection.Observe(call);
            throw;
        }
    }
}
