using System.Net.Sockets;
using StackExchange.Redis;

namespace LlmGateway.Redis;

/// <summary>
/// The gateway's one Redis multiplexer (StackExchange.Redis), shared by every Redis-backed store: admissions,
/// settlements, halts, idempotency, cache and recordings. Connects lazily with AbortOnConnectFail=false, so it comes
/// back by itself after Redis restarts; runs Lua scripts by SHA (EVALSHA) and resends the source once after a NOSCRIPT
/// (first use, or a Redis restart). The connection string is the library's own syntax (endpoints, <c>user=</c>,
/// <c>password=</c>, <c>ssl=</c>, <c>sslHost=</c>, <c>serviceName=</c>, <c>defaultDatabase=</c>, ...).
/// </summary>
internal sealed class RedisConnection : IDisposable
{
    private readonly ConfigurationOptions _configuration;
    private readonly Lock _lock = new();
    private Task<ConnectionMultiplexer>? _connection;
    /// <summary>How long a command already sent may wait for Redis's reply (see the constructor).</summary>
    internal static readonly TimeSpan LateReplyWait = TimeSpan.FromSeconds(10);

    private readonly int _replicas;
    private readonly long _replicaWaitMs;
    private bool _disposed;

    /// <param name="tlsCaFile">PEM certificate of the issuer to trust for Redis's TLS certificate (Gateway:Store:TlsCaFile), or null.</param>
    /// <param name="replicas">Gateway:Store:WaitForReplicas: after every script, wait until this many replicas hold its writes (0: never wait).</param>
    /// <param name="replicaWait">How long WAIT waits for them (Gateway:Store:Timeout); unused when <paramref name="replicas"/> is 0.</param>
    public RedisConnection(string configuration, TimeSpan connectTimeout, string? tlsCaFile = null, int replicas = 0, TimeSpan replicaWait = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(replicas);
        _replicas = replicas;
        _replicaWaitMs = Math.Max(1, (long)replicaWait.TotalMilliseconds);
        ArgumentException.ThrowIfNullOrEmpty(configuration);
        _configuration = ConfigurationOptions.Parse(configuration);
        if (!string.IsNullOrWhiteSpace(tlsCaFile))
        {
            // Only certificates chained to this issuer (and matching sslHost) are accepted; the system store is not consulted.
            _configuration.TrustIssuer(tlsCaFile);
        }

        _configuration.AbortOnConnectFail = false;
        _configuration.ConnectTimeout = (int)connectTimeout.TotalMilliseconds;
        _configuration.SyncTimeout = (int)connectTimeout.TotalMilliseconds;

        // Every caller bounds its own wait (Gateway:Store:Timeout) and keeps the call to see a late reply: a script
        // Redis ran after its caller gave up admitted calls nobody will settle, and is given back when its reply comes
        // (WhenAnswered). So the client must not give up on a command already sent: by default it would after its
        // timeout (1 s), and a reply after a longer stall (a slow fork, a fail-over) was dropped, its holds kept until
        // their TTL (RedisLateAdmissionTests). A connection that dies still fails what was sent on it at once.
        _configuration.AsyncTimeout = (int)LateReplyWait.TotalMilliseconds;
        _configuration.KeepAlive = 5;
        _configuration.SetDefaultPorts();
    }

    /// <summary>The parsed connection string (endpoints, user, TLS); never log it whole, it may hold the password.</summary>
    public ConfigurationOptions Configuration => _configuration;

    public Task<ConnectionMultiplexer> ConnectAsync()
    {
        var connection = Volatile.Read(ref _connection);
        if (connection is not null && !connection.IsFaulted && !connection.IsCanceled)
        {
            return connection;
        }

        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connection is null || _connection.IsFaulted || _connection.IsCanceled)
            {
                // With AbortOnConnectFail=false the multiplexer comes back even while Redis is down and keeps
                // reconnecting in the background; a faulted task (bad configuration) is retried on the next call.
                _connection = Task.Run(async () => await ConnectionMultiplexer.ConnectAsync(_configuration).ConfigureAwait(false));
            }

            return _connection;
        }
    }

    public async Task<IDatabase> DatabaseAsync() => (await ConnectAsync().ConfigureAwait(false)).GetDatabase();

    /// <summary>
    /// Runs a script by SHA (by source after a NOSCRIPT). With <c>WaitForReplicas</c> set, a WAIT follows it on the same
    /// connection to the server of its first key (pipelined: no extra round trip, only the replicas' acknowledgement), and
    /// the script's writes count only once that many replicas hold them: a fail-over to an acknowledging replica then
    /// loses no admission, settlement or lease the gateway acted on. Too few acknowledgements within the wait throw
    /// <see cref="RedisReplicationTimeoutException"/>, a <see cref="TimeoutException"/> that carries the script's reply,
    /// so what the script took is given back like any reply that came too late (<see cref="WhenAnswered"/>).
    /// </summary>
    /// <remarks>
    /// With <c>WaitForReplicas</c> the script and its WAIT go to one server, chosen once, and the script with
    /// <see cref="CommandFlags.NoRedirect"/>: it runs on the node whose replicas the WAIT counts, or not at all. Routed
    /// apart, the two can part: while a slot's node is disconnected the client sends its commands to any node (each
    /// choice its own), and a script that reached the slot's new master (or followed a MOVED there) ran on a node
    /// without replicas while its WAIT was answered by another node's; the cluster replica fail-over test caught this.
    /// A script refused with MOVED follows <c>OnUnavailable</c>, and the client has learnt the slot's node for the next.
    /// </remarks>
    public async Task<RedisResult> EvaluateAsync(RedisScript script, RedisKey[] keys, RedisValue[] args)
    {
        var connection = await ConnectAsync().ConfigureAwait(false);
        if (_replicas > 0)
        {
            return await ConfirmedAsync(connection, script, keys, args).ConfigureAwait(false);
        }

        var database = connection.GetDatabase();
        try
        {
            return await database.ScriptEvaluateAsync(script.Hash, keys, args).ConfigureAwait(false);
        }
        catch (RedisServerException exception) when (IsNoScript(exception))
        {
            return await database.ScriptEvaluateAsync(script.Source, keys, args).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The script on the primary of its first key's slot, with a WAIT queued right behind it on the same connection: by
    /// SHA, and after a NOSCRIPT by its source (<paramref name="byHash"/> false: straight from the source).
    /// </summary>
    private async Task<RedisResult> ConfirmedAsync(IConnectionMultiplexer connection, RedisScript script, RedisKey[] keys, RedisValue[] args, bool byHash = true)
    {
        var server = ServerOf(connection, keys);
        try
        {
            return await ConfirmedAsync(RunOn(server, script, byHash, keys, args), WaitAsync(server)).ConfigureAwait(false);
        }
        catch (RedisServerException exception) when (byHash && IsNoScript(exception))
        {
            return await ConfirmedAsync(connection, script, keys, args, byHash: false).ConfigureAwait(false);
        }
    }

    /// <summary>The primary serving the first key's slot; none (e.g. a lone primary down) is the store unavailable, not a bug.</summary>
    private static IServer ServerOf(IConnectionMultiplexer connection, RedisKey[] keys)
    {
        try
        {
            return keys.Length > 0 ? connection.GetServer(keys[0], flags: CommandFlags.DemandMaster) : connection.GetServers().First(static s => !s.IsReplica);
        }
        catch (InvalidOperationException exception)
        {
            throw new RedisConnectionException(ConnectionFailureType.UnableToResolvePhysicalConnection, CommandFlags.None, "no primary to run the script on: " + exception.Message, exception, CommandStatus.WaitingToBeSent);
        }
    }

    /// <summary>EVALSHA (or EVAL) on <paramref name="server"/> only: a MOVED is an error, not followed.</summary>
    private static Task<RedisResult> RunOn(IServer server, RedisScript script, bool byHash, RedisKey[] keys, RedisValue[] args)
    {
        var arguments = new object[2 + keys.Length + args.Length];
        arguments[0] = byHash ? script.HexHash : script.Source;
        arguments[1] = keys.Length;
        for (var i = 0; i < keys.Length; i++)
        {
            arguments[2 + i] = keys[i];
        }

        for (var i = 0; i < args.Length; i++)
        {
            arguments[2 + keys.Length + i] = args[i];
        }

        return server.ExecuteAsync(byHash ? "EVALSHA" : "EVAL", arguments, CommandFlags.NoRedirect);
    }

    private static bool IsNoScript(RedisServerException exception) => exception.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal);

    private async Task<RedisResult> ConfirmedAsync(Task<RedisResult> call, Task<RedisResult> wait)
    {
        var reply = await call.ConfigureAwait(false);
        await ConfirmAsync(wait, reply).ConfigureAwait(false);
        return reply;
    }

    /// <summary>
    /// Several scripts sent together (one per hash slot of a cluster batch), each answered with its reply. With
    /// <c>WaitForReplicas</c>, one WAIT follows them per server rather than one per script: a WAIT blocks its connection
    /// until the replicas answer, so scripts on one node would otherwise wait out each other's WAIT in turn.
    /// </summary>
    public async Task<Task<RedisResult>[]> EvaluateAllAsync(RedisScript script, RedisKey[][] keys, RedisValue[][] args)
    {
        if (_replicas == 0 || keys.Length == 1)
        {
            var single = new Task<RedisResult>[keys.Length];
            for (var i = 0; i < keys.Length; i++)
            {
                single[i] = EvaluateAsync(script, keys[i], args[i]);
            }

            return single;
        }

        var answered = new Task<RedisResult>[keys.Length];
        try
        {
            var connection = await ConnectAsync().ConfigureAwait(false);
            var calls = new Task<RedisResult>[keys.Length];
            var servers = new IServer[keys.Length];
            for (var i = 0; i < keys.Length; i++)
            {
                servers[i] = ServerOf(connection, keys[i]);
                calls[i] = RunOn(servers[i], script, byHash: true, keys[i], args[i]);
            }

            var waits = new Dictionary<System.Net.EndPoint, Task<RedisResult>>();
            for (var i = 0; i < keys.Length; i++)
            {
                if (!waits.TryGetValue(servers[i].EndPoint, out var wait))
                {
                    waits[servers[i].EndPoint] = wait = WaitAsync(servers[i]);
                }

                answered[i] = AnsweredAsync(calls[i], wait, connection, script, keys[i], args[i]);
            }
        }
        catch (Exception exception) when (IsUnavailable(exception))
        {
            // Not connected, or no server for a slot: every script not yet on its way fails as its own call would.
            for (var i = 0; i < keys.Length; i++)
            {
                answered[i] ??= Task.FromException<RedisResult>(exception);
            }
        }

        return answered;
    }

    private async Task<RedisResult> AnsweredAsync(Task<RedisResult> call, Task<RedisResult> wait, IConnectionMultiplexer connection, RedisScript script, RedisKey[] keys, RedisValue[] args)
    {
        try
        {
            return await ConfirmedAsync(call, wait).ConfigureAwait(false);
        }
        catch (RedisServerException exception) when (IsNoScript(exception))
        {
            // Loaded from its source, with a WAIT of its own (rare: the first use after a Redis restart).
            return await ConfirmedAsync(connection, script, keys, args, byHash: false).ConfigureAwait(false);
        }
    }

    private Task<RedisResult> WaitAsync(IServer server)
    {
        var wait = server.ExecuteAsync("WAIT", _replicas, _replicaWaitMs);
        Observe(wait);
        return wait;
    }

    private async Task ConfirmAsync(Task<RedisResult> wait, RedisResult reply)
    {
        long acknowledged;
        try
        {
            acknowledged = (long)await wait.ConfigureAwait(false);
        }
        catch (Exception exception) when (IsUnavailable(exception))
        {
            throw new RedisReplicationTimeoutException(reply, 0, _replicas, _replicaWaitMs, exception);
        }

        if (acknowledged < _replicas)
        {
            throw new RedisReplicationTimeoutException(reply, acknowledged, _replicas, _replicaWaitMs, null);
        }
    }

    /// <summary>
    /// Connects once on a connection of its own that gives up at the first failure, and says why it failed (null: it
    /// connected). Tells refused credentials and refused TLS certificates, which never heal by waiting, from an
    /// unreachable server.
    /// </summary>
    public async Task<RedisProbeFailure?> ProbeAsync(TimeSpan maxWait)
    {
        var probe = _configuration.Clone();
        probe.AbortOnConnectFail = true;
        probe.ConnectRetry = 1;
        probe.ConnectTimeout = (int)maxWait.TotalMilliseconds;
        try
        {
            using var connection = await ConnectionMultiplexer.ConnectAsync(probe).WaitAsync(maxWait + maxWait).ConfigureAwait(false);
            return null;
        }
        catch (RedisConnectionException exception)
        {
            return new RedisProbeFailure(exception.FailureType, IsCertificateFailure(exception));
        }
        catch (TimeoutException)
        {
            return new RedisProbeFailure(ConnectionFailureType.UnableToConnect, false);
        }
    }

    public async Task PingAsync() => await (await DatabaseAsync().ConfigureAwait(false)).PingAsync().ConfigureAwait(false);

    /// <summary>
    /// Failures that mean "Redis cannot answer this now": timeouts, lost connections, and every error Redis or the client
    /// reports (READONLY or MASTERDOWN during a fail-over, OOM, CLUSTERDOWN, TRYAGAIN, a MOVED or ASK the client could
    /// not follow, CROSSSLOT, NOSCRIPT after the retry with the source, a script error). Each becomes the caller's
    /// unavailable-store behaviour (Gateway:Store:OnUnavailable) with a log line, never an unhandled exception.
    /// </summary>
    public static bool IsUnavailable(Exception exception) => exception switch
    {
        TimeoutException or RedisException or RedisCommandException or SocketException or IOException => true,
        _ => false,
    };

    /// <summary>Whether a connection failed in the TLS handshake (the server's certificate was not accepted).</summary>
    private static bool IsCertificateFailure(Exception exception)
    {
        for (Exception? inner = exception; inner is not null; inner = inner.InnerException)
        {
            if (inner is System.Security.Authentication.AuthenticationException)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Runs <paramref name="then"/> with a Redis reply that arrives after its caller stopped waiting for it (a script
    /// that timed out here but ran when Redis caught up), so what it took can be given back; nothing if it failed.
    /// A script whose writes too few replicas acknowledged (<see cref="RedisReplicationTimeoutException"/>) ran all the same:
    /// its reply is handed over too.
    /// </summary>
    public static void WhenAnswered(Task<RedisResult> call, Func<RedisResult, Task> then) =>
        Observe(call.ContinueWith(
            static (task, state) => Answered(task) is { } reply ? ((Func<RedisResult, Task>)state!)(reply) : Task.CompletedTask,
            then,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default).Unwrap());

    /// <summary>The reply a finished script call ran with, if it ran: its result, or the reply a replication timeout carries.</summary>
    private static RedisResult? Answered(Task<RedisResult> task) =>
        task.IsCompletedSuccessfully ? task.Result
        : task.Exception?.InnerException is RedisReplicationTimeoutException unreplicated ? unreplicated.Reply
        : null;

    /// <summary>An abandoned call may still fail later; observe it so it never surfaces as an unobserved exception.</summary>
    public static void Observe(Task task) =>
        task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    public void Dispose()
    {
        Task<ConnectionMultiplexer>? connection;
        lock (_lock)
        {
            _disposed = true;
            connection = _connection;
            _connection = null;
        }

        if (connection is null)
        {
            return;
        }

        if (connection.IsCompletedSuccessfully)
        {
            connection.Result.Dispose();
        }
        else
        {
            connection.ContinueWith(static t => t.Result.Dispose(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
        }
    }
}

/// <summary>
/// A script ran on the primary but fewer replicas than Gateway:Store:WaitForReplicas acknowledged its writes in time: a
/// fail-over now could lose them, so its caller treats it as a timeout (the store is unavailable) and whatever the script
/// took is given back from <see cref="Reply"/>.
/// </summary>
internal sealed class RedisReplicationTimeoutException(RedisResult reply, long acknowledged, int wanted, long waitMs, Exception? inner)
    : TimeoutException($"{acknowledged} of {wanted} replicas acknowledged the write within {waitMs} ms", inner)
{
    /// <summary>What the script answered on the primary.</summary>
    public RedisResult Reply { get; } = reply;
}

/// <summary>Why a start-up probe could not connect: the library's failure type, and whether the TLS handshake refused the certificate.</summary>
internal sealed record RedisProbeFailure(ConnectionFailureType Type, bool Certificate);
