using System.Collections.Concurrent;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;

namespace LlmGateway.Budgets.Leases;

/// <summary>
/// The Redis store with leases (Gateway:Store:Leases): a replica takes a block of a budget scope's remaining room in one
/// single-slot script and admits calls locally while the block lasts, so most calls cost Redis nothing. Design and
/// trade-offs: docs/redis-scale-out.md.
/// </summary>
/// <remarks>
/// Leased: the user's and the team's period budgets (USD, tokens, calls), the user's halt, the user's and the key's
/// RPM/TPM windows and the user's in-flight cap. A run is not leased: a call of a run, once its blocks admitted it,
/// has its run decided by one single-slot script on the run's keys alone (<see cref="RedisAdmissionStore.ReserveRunAsync"/>),
/// and is refused, its holds on the blocks given back, when the run refuses. Every call that a block cannot admit
/// (near a limit, halted) goes to the exact per-call <see cref="RedisAdmissionStore"/>, after this replica has given
/// back the unused room of the scopes involved. Blocks are held in Redis in the per-call layout (reservations, window counters,
/// in-flight counters), so both paths see each other: spent + every block + every reservation ≤ the limit, across
/// replicas.
/// </remarks>
internal sealed partial class LeasedAdmissionStore : IAdmissionStore, IDisposable
{
    /// <summary>
    /// Grants a call may take part in before it goes per call: under a burst a block runs out while callers wait for it,
    /// and the next one is twice the calls the last served; with 3, a cold replica sent most of a 200-call burst per call.
    /// </summary>
    private const int MaxAttempts = 6;

    private readonly RedisAdmissionStore _inner;
    private readonly bool _ownsInner;
    private readonly RedisConnection _redis;
    private readonly LeaseOptions _lease;
    private readonly TimeProvider _time;
    private readonly TimeSpan _timeout;
    private readonly string _prefix;
    private readonly string _channelName;
    private readonly RedisChannel _channel;
    private readonly long _retentionMs;
    private readonly long _windowMs;
    private readonly long _idleMs;
    private readonly long _inFlightRetryMs;
    private readonly string _idPrefix = ReservationIds.NewPrefix();
    private readonly ConcurrentDictionary<string, LeaseScope> _scopes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SubjectLeases> _users = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SubjectLeases> _teams = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SubjectLeases> _keys = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _subscribing = new(1, 1);
    private readonly ITimer _sweeper;
    private readonly Action<RedisChannel, RedisValue> _onMessage;
    private readonly ILogger _logger;
    private readonly GatewayMetrics? _metrics;
    private readonly EventHandler<ConnectionFailedEventArgs> _onConnectionFailed;
    private readonly EventHandler<EndPointEventArgs> _onConfigurationChanged;
    private long _connectionEpoch;
    private long _connectionLosses;
    private bool _watching;
    private long _sequence;
    private long _invalidations;
    private long _scripts;
    private long _lostReturns;
    private bool _subscribed;
    private bool _stopped;

    public LeasedAdmissionStore(RedisConnection redis, RedisAdmissionStore inner, AdmissionStoreOptions options, LeaseOptions lease, TimeProvider timeProvider, bool ownsInner = false, ILogger? logger = null, GatewayMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(lease);
        ArgumentNullException.ThrowIfNull(timeProvider);
        options.Validate();
        lease.Validate();
        _redis = redis;
        _inner = inner;
        _ownsInner = ownsInner;
        _lease = lease;
        _time = timeProvider;
        _timeout = options.OperationTimeout;
        _prefix = options.KeyPrefix;
        _channelName = _prefix + "leases";
        _channel = RedisChannel.Literal(_channelName);
        _retentionMs = (long)options.PeriodRetention.TotalMilliseconds;
        _windowMs = Math.Max(1, (long)lease.Window.TotalMilliseconds);
        _idleMs = (long)options.RunIdleExpiry.TotalMilliseconds;
        _inFlightRetryMs = (long)options.InFlightRetryAfter.TotalMilliseconds;
        _logger = logger ?? NullLogger.Instance;
        _metrics = metrics;
        _onMessage = OnMessage;
        _onConnectionFailed = (_, failed) => OnConnectionLost($"{failed.FailureType} on {failed.ConnectionType} connection to {failed.EndPoint}");
        _onConfigurationChanged = (_, changed) => OnConnectionLost($"configuration of {changed.EndPoint} changed");
        _sweeper = timeProvider.CreateTimer(static state => ((LeasedAdmissionStore)state!).Sweep(), this, lease.SweepInterval, lease.SweepInterval);
    }

    /// <summary>The exact per-call store this one falls back on (script loading at start-up).</summary>
    internal RedisAdmissionStore Inner => _inner;

    /// <summary>Lease messages (halts, resumes, limit changes) received over pub/sub; for tests.</summary>
    internal long Invalidations => Interlocked.Read(ref _invalidations);

    /// <summary>Lease scripts sent (grants, returns, bumps); per-call scripts are counted by the inner store.</summary>
    internal long LeaseScriptsSent => Interlocked.Read(ref _scripts);

    /// <summary>Connection failures and configuration changes seen (each closed every open block); for tests.</summary>
    internal long ConnectionLosses => Interlocked.Read(ref _connectionLosses);

    /// <summary>Returns given up after their retries (their holds expire by TTL; their calls' spend was not recorded).</summary>
    internal long LostReturns => Interlocked.Read(ref _lostReturns);

    public async ValueTask<AdmissionResult> ReserveAsync(AdmissionRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_stopped)
        {
            // Per call: this replica's rate and in-flight blocks of the subjects give their unused room back first, so
            // the exact path sees only calls, not room set aside.
            await CloseSubjectsAsync(request).ConfigureAwait(false);
            return await _inner.ReserveAsync(request, cancellationToken).ConfigureAwait(false);
        }

        var now = NowMs();
        var ei = AdmissionConstants.ExpirySecond(now + Math.Max(1, (long)request.ReservationTtl.TotalMilliseconds));
        var parts = Parts(request, now);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            if (TryAdmit(parts, ei, NowMs()) is { } admitted)
            {
                return request.RunId is null ? admitted : await WithRunAsync(request, admitted, cancellationToken).ConfigureAwait(false);
            }

            var granted = true;
            foreach (var part in parts)
            {
                if (!await EnsureBlockAsync(part.Scope, part.Limits, part.Need, ei, cancellationToken).ConfigureAwait(false))
                {
                    granted = false;
                    break;
                }
            }

            if (!granted)
            {
                break;
            }
        }

        return await DecideExactlyAsync(request, parts, ei, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask SettleAsync(Reservation reservation, decimal actualUsd, long actualTokens, CancellationToken cancellationToken = default)
    {
        if (reservation is not LeasedReservation held)
        {
            await _inner.SettleAsync(reservation, actualUsd, actualTokens, cancellationToken).ConfigureAwait(false);
            return;
        }

        try
        {
            await FinishAsync(held, new LeaseAmounts(UsdAmount.ToNanosCeiling(actualUsd), Math.Max(0, actualTokens), 1)).ConfigureAwait(false);
        }
        finally
        {
            if (held.Run is { } run)
            {
                await FinishRunAsync(run, settle: true, actualUsd, actualTokens, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    public async ValueTask ReleaseAsync(Reservation reservation, CancellationToken cancellationToken = default)
    {
        if (reservation is not LeasedReservation held)
        {
            await _inner.ReleaseAsync(reservation, cancellationToken).ConfigureAwait(false);
            return;
        }

        try
        {
            await FinishAsync(held, default).ConfigureAwait(false);
        }
        finally
        {
            if (held.Run is { } run)
            {
                await FinishRunAsync(run, settle: false, 0, 0, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Halts the run in Redis; the replica that owns it, this one or another (asked over pub/sub), lets go.</summary>
    public async ValueTask HaltRunAsync(string runId, CancellationToken cancellationToken = default)
    {
        await _inner.HaltRunAsync(runId, cancellationToken).ConfigureAwait(false);
        await LetGoOfRunAsync(runId).ConfigureAwait(false);
    }

    public ValueTask ResumeRunAsync(string runId, CancellationToken cancellationToken = default) => _inner.ResumeRunAsync(runId, cancellationToken);

    public async ValueTask HaltUserAsync(string user, CancellationToken cancellationToken = default)
    {
        await _inner.HaltUserAsync(user, cancellationToken).ConfigureAwait(false);
        await BumpAsync(UserControl(user), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask ResumeUserAsync(string user, CancellationToken cancellationToken = default)
    {
        await _inner.ResumeUserAsync(user, cancellationToken).ConfigureAwait(false);
        await BumpAsync(UserControl(user), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The run as Redis has it, after the replica that owns it (this one, or another asked over pub/sub) wrote it back and let go.</summary>
    public async ValueTask<RunBudgetState?> GetRunStateAsync(string runId, CancellationToken cancellationToken = default)
    {
        await LetGoOfRunAsync(runId).ConfigureAwait(false);
        return await _inner.GetRunStateAsync(runId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The user's state after this replica gave back its unused room and charged its settled calls: spent and reserved
    /// are then exact for this replica's calls; other replicas' open blocks show as reserved. In flight adds this
    /// replica's leased calls (the per-call counter does not see them).
    /// </summary>
    public async ValueTask<UserBudgetState> GetUserStateAsync(string user, string periodKey, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        var control = UserControl(user);
        var local = 0L;
        foreach (var scope in _scopes.Values)
        {
            if (scope.Control == control)
            {
                await CloseAsync(scope).ConfigureAwait(false);
                lock (scope.Gate)
                {
                    foreach (var block in scope.Closed)
                    {
                        // A leased call holds the user's budget block; with an in-flight cap also an in-flight block,
                        // whose slots the per-call counter already counts.
                        local += scope.Kind switch
                        {
                            LeaseKind.Budget => block.Held.Calls,
                            LeaseKind.InFlight => -block.Held.Calls,
                            _ => 0,
                        };
                    }
                }
            }
        }

        var state = await _inner.GetUserStateAsync(user, periodKey, cancellationToken).ConfigureAwait(false);
        return local == 0 ? state : state with { InFlight = state.InFlight + (int)local };
    }

    public ValueTask<bool> PingAsync(CancellationToken cancellationToken = default) => _inner.PingAsync(cancellationToken);

    /// <summary>
    /// Closes every block and gives back all the room its calls in flight do not hold, and lets go of every run this
    /// replica owns (tests, shutdown).
    /// </summary>
    internal Task ReturnAllAsync() => Task.WhenAll(_scopes.Values.Select(scope => CloseAsync(scope).AsTask()).Concat(_runs.Values.Select(CloseRunAsync)));

    /// <summary>Loads the per-call and lease scripts on every primary and subscribes to lease messages (start-up).</summary>
    internal async Task WarmUpAsync()
    {
        await _inner.LoadScriptsAsync().ConfigureAwait(false);
        var multiplexer = await _redis.ConnectAsync().ConfigureAwait(false);
        var loads = new List<Task>();
        foreach (var endpoint in multiplexer.GetEndPoints())
        {
            var server = multiplexer.GetServer(endpoint);
            if (server.IsConnected && !server.IsReplica)
            {
                loads.AddRange(LeaseScripts.All.Concat(RunBlockScripts.All).Select(script => (Task)server.ScriptLoadAsync(script.Source)));
            }
        }

        await Task.WhenAll(loads).ConfigureAwait(false);
        await EnsureSubscribedAsync().ConfigureAwait(false);
    }

    /// <summary>Stops the sweeper and gives every block back (bounded by the store timeout per block).</summary>
    public void Dispose()
    {
        if (_stopped)
        {
            return;
        }

        _sweeper.Dispose();
        try
        {
            ReturnAllAsync().Wait(_timeout * 4);
        }
        catch (AggregateException)
        {
            // Not returned: the blocks expire by their TTL.
        }

        StopReturns(tryPending: true);
        _stopped = true;
        Unsubscribe();
        if (_ownsInner)
        {
            _inner.Dispose();
        }
    }

    /// <summary>
    /// For tests: the replica dies — it stops sweeping and listening and never returns its blocks, which Redis gives
    /// back when they expire.
    /// </summary>
    internal void Kill()
    {
        _stopped = true;
        _sweeper.Dispose();
        StopReturns(tryPending: false);
        Unsubscribe();
        _scopes.Clear();
        _runs.Clear();
        _users.Clear();
        _teams.Clear();
        _keys.Clear();
    }

    private static LeaseLimits Limits(BudgetLimits limits) =>
        new(UsdAmount.ToNanosFloor(limits.Usd), Math.Max(0, limits.Tokens), Math.Max(0, limits.Calls));

    private string UserControl(string user) => _prefix + "{u:" + user + "}";

    private long NowMs() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>
    /// The scope of a user's or team's budget in the current period, cached per subject. Key names are the per-call
    /// store's (RedisAdmissionStore.Types.cs): the blocks live in the same hashes as its reservations.
    /// </summary>
    private LeaseScope Scope(ConcurrentDictionary<string, SubjectLeases> cache, string tag, string name, BudgetPeriod period, long now, bool isUser)
    {
        var subject = cache.TryGetValue(name, out var found) ? found : cache.GetOrAdd(name, static _ => new SubjectLeases());
        var id = BudgetPeriods.GetId(period, now);
        var current = Volatile.Read(ref subject.Current);
        if (current is not null && current.Period == period && current.PeriodId == id)
        {
            return current;
        }

        var instant = DateTimeOffset.FromUnixTimeMilliseconds(now);
        var key = BudgetPeriods.GetKey(period, instant);
        var control = _prefix + "{" + tag + ":" + name + "}";
        var budget = control + "b:" + key;
        var end = BudgetPeriods.GetEnd(period, instant)?.ToUnixTimeMilliseconds() ?? 0;
        var scope = _scopes.GetOrAdd(LeaseKind.Budget + ":" + budget, _ => new LeaseScope(isUser ? control : budget, budget, control + "bx:" + key, isUser, period, id, end));
        Volatile.Write(ref subject.Current, scope);
        return scope;
    }

    private sealed class SubjectLeases
    {
        public LeaseScope? Current;

        public LeaseScope? Rate;

        public LeaseScope? InFlight;
    }
}
