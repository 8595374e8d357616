using System.Net.Sockets;
using StackExchange.Redis;

namespace LlmGateway.Redis;

/// <summary>
/// The gateway's one Redis multiplexer, shared by every Redis-backed store (budgets, idempotency, cache).
/// Connects lazily with AbortOnConnectFail=false, so it comes back by itself after Redis restarts; runs Lua
/// scripts by SHA (EVALSHA) and resends the source once after a NOSCRIPT (first use, or a Redis restart).
/// </summary>
internal sealed class RedisConnection : IDisposable
{
    private readonly ConfigurationOptions _configuration;
    private readonly RedisScriptClient? _scripts;
    private readonly Lock _lock = new();
    private Task<ConnectionMultiplexer>? _connection;
    private bool _disposed;

    /// <param name="scriptClient">False keeps the request-path scripts on the multiplexer too (tests of that path).</param>
    public RedisConnection(string configuration, TimeSpan connectTimeout, bool scriptClient = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(configuration);
        _configuration = ConfigurationOptions.Parse(configuration);
        _configuration.AbortOnConnectFail = false;
        _configuration.ConnectTimeout = (int)connectTimeout.TotalMilliseconds;
        _configuration.SyncTimeout = (int)connectTimeout.TotalMilliseconds;
        _configuration.KeepAlive = 5;
        _configuration.SetDefaultPorts();

        // A call whose reply has not come after this long means Redis is hung or the link is dead (callers gave up
        // long before: store calls are bounded by their own, shorter, operation timeouts).
        _scripts = !scriptClient ? null : RedisScriptClient.TryCreate(_configuration, connectTimeout, TimeSpan.FromMilliseconds(Math.Max(500, connectTimeout.TotalMilliseconds)));
    }

    /// <summary>Whether the hot-path scripts run on the lean pipelined client (plain single-endpoint configurations).</summary>
    public bool HasScriptClient => _scripts is not null;

    /// <summary>
    /// Runs a script of the request path (admissions, settlements): on <see cref="RedisScriptClient"/> when the
    /// configuration allows, else on the multiplexer.
    /// </summary>
    /// <param name="args">Each a <see cref="string"/> or a <see cref="byte"/> array.</param>
    public async Task<RespReply> EvaluateScriptAsync(RedisScript script, string[] keys, object[] args)
    {
        if (_scripts is not null)
        {
            return await _scripts.EvaluateAsync(script, keys, args).ConfigureAwait(false);
        }

        var redisKeys = new RedisKey[keys.Length];
        for (var i = 0; i < keys.Length; i++)
        {
            redisKeys[i] = keys[i];
        }

        var values = new RedisValue[args.Length];
        for (var i = 0; i < args.Length; i++)
        {
            values[i] = args[i] switch
            {
                byte[] bytes => bytes,
                string text => text,
                var other => throw new ArgumentException($"A script argument must be a string or bytes, not {other?.GetType().Name ?? "null"}."),
            };
        }

        return ToReply(await EvaluateAsync(script, redisKeys, values).ConfigureAwait(false));
    }

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

    /// <summary>PING on the connection the request-path scripts use (the multiplexer's when they use it).</summary>
    public async Task PingScriptsAsync()
    {
        if (_scripts is not null)
        {
            await _scripts.PingAsync().ConfigureAwait(false);
            return;
        }

        await (await DatabaseAsync().ConfigureAwait(false)).PingAsync().ConfigureAwait(false);
    }

    /// <summary>Failures that mean "Redis cannot answer now", as opposed to a bug in a script.</summary>
    public static bool IsUnavailable(Exception exception) => exception switch
    {
        TimeoutException or RedisConnectionException or SocketException or IOException => true,
        RedisServerException or RedisScriptException => IsTransient(exception.Message),
        _ => false,
    };

    private static bool IsTransient(string error) =>
        error.StartsWith("LOADING", StringComparison.Ordinal)
        || error.StartsWith("BUSY", StringComparison.Ordinal)
        || error.StartsWith("MASTERDOWN", StringComparison.Ordinal)
        || error.StartsWith("READONLY", StringComparison.Ordinal)
        || error.StartsWith("TRYAGAIN", StringComparison.Ordinal)
        || error.StartsWith("CLUSTERDOWN", StringComparison.Ordinal);

    /// <summary>
    /// The multiplexer's reply as a <see cref="RespReply"/>. RedisResult 1.2.6 does not say its type, so its casts
    /// are tried (array, then number, else text); only configurations the script client does not handle come here.
    /// </summary>
    private static RespReply ToReply(RedisResult result)
    {
        if (result.IsNull)
        {
            return RespReply.Nil;
        }

        RedisResult[]? items = null;
        try
        {
            items = (RedisResult[])result!;
        }
        catch (InvalidCastException)
        {
        }

        if (items is not null)
        {
            var replies = new RespReply[items.Length];
            for (var i = 0; i < items.Length; i++)
            {
                replies[i] = ToReply(items[i]);
            }

            return RespReply.FromArray(replies);
        }

        var text = (string)result!;
        return long.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var number)
            ? RespReply.FromInteger(number)
            : RespReply.FromText(RespKind.Bulk, text ?? string.Empty);
    }

    /// <summary>An abandoned call may still fail later; observe it so it never surfaces as an unobserved exception.</summary>
    public static void Observe(Task task) =>
        task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    public void Dispose()
    {
        _scripts?.Dispose();
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
