using StackExchange.Redis;

namespace LlmGateway.Caching;

/// <summary>
/// The Redis connection of the cache and recording stores: one multiplexer, connected lazily with
/// AbortOnConnectFail=false (it reconnects by itself), and every call bounded by the store timeout in real time, so
/// no request waits on Redis longer than that. Failures surface as exceptions; callers treat them as a miss.
/// </summary>
internal sealed class CacheRedisConnection : IDisposable
{
    private readonly ConfigurationOptions _configuration;
    private readonly TimeSpan _timeout;
    private readonly Lock _lock = new();
    private Task<ConnectionMultiplexer>? _connection;
    private bool _disposed;

    public CacheRedisConnection(string configuration, TimeSpan timeout)
    {
        ArgumentException.ThrowIfNullOrEmpty(configuration);
        _configuration = ConfigurationOptions.Parse(configuration);
        _configuration.AbortOnConnectFail = false;
        _configuration.ConnectTimeout = 1000;
        _configuration.SyncTimeout = 1000;
        _configuration.ResponseTimeout = 1000;
        _configuration.KeepAlive = 5;
        _timeout = timeout;
    }

    public async Task<IDatabase> DatabaseAsync(CancellationToken cancellationToken)
    {
        Task<ConnectionMultiplexer> connection;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connection is null || _connection.IsFaulted || _connection.IsCanceled)
            {
                _connection = Task.Run(() => ConnectionMultiplexer.ConnectAsync(_configuration));
            }

            connection = _connection;
        }

        return (await BoundAsync(connection, cancellationToken).ConfigureAwait(false)).GetDatabase();
    }

    /// <summary>Waits for a Redis call at most the store timeout; an abandoned call is observed so it never surfaces later.</summary>
    public async Task<T> BoundAsync<T>(Task<T> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call.WaitAsync(_timeout, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _ = call.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            throw;
        }
    }

    public void Dispose()
    {
        Task<ConnectionMultiplexer>? connection;
        lock (_lock)
        {
            _disposed = true;
            connection = _connection;
        }

        connection?.ContinueWith(static t => t.Result.Dispose(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }
}
