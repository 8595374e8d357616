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
    private bool _disposed;

    /// <param name="tlsCaFile">PEM certificate of the issuer to trust for Redis's TLS certificate (Gateway:Store:TlsCaFile), or null.</param>
    public RedisConnection(string configuration, TimeSpan connectTimeout, string? tlsCaFile = null)
    {
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

    public async Task<RedisResult> EvaluateAsync(RedisScript script, RedisKey[] keys, RedisValue[] args)
    {
        var database = await DatabaseAsync().ConfigureAwait(false);
        try
        {
            return await database.ScriptEvaluateAsync(script.Hash, keys, args).ConfigureAwait(false);
        }
        catch (RedisServerException exception) when (exception.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal))
        {
            return await database.ScriptEvaluateAsync(script.Source, keys, args).ConfigureAwait(false);
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

    /// <summary>An abandoned call may still fail later; observe it so it never surfaces as an unobserved exception.</summary>
    /// <summary>
    /// Runs <paramref name="then"/> with a Redis reply that arrives after its caller stopped waiting for it (a script
    /// that timed out here but ran when Redis caught up), so what it took can be given back; nothing if it failed.
    /// </summary>
    public static void WhenAnswered(Task<RedisResult> call, Func<RedisResult, Task> then) =>
        Observe(call.ContinueWith(
            static (task, state) => task.IsCompletedSuccessfully ? ((Func<RedisResult, Task>)state!)(task.Result) : Task.CompletedTask,
            then,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default).Unwrap());

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

/// <summary>Why a start-up probe could not connect: the library's failure type, and whether the TLS handshake refused the certificate.</summary>
internal sealed record RedisProbeFailure(ConnectionFailureType Type, bool Certificate);
