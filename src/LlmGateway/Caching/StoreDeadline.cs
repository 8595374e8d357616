namespace LlmGateway.Caching;

/// <summary>
/// Bounds calls to a shared store (Redis, or the operator's <see cref="Microsoft.Extensions.Caching.Distributed.IDistributedCache"/>)
/// by Gateway:Store:Timeout in real time, so no request waits on the store longer than that. The token goes to the
/// call, and the wait ends at the deadline even where the call ignores its token: RedisCache checks it only before
/// it sends a command, and StackExchange.Redis commands take none.
/// </summary>
/// <remarks>A call given up on may still fail later; it is observed so that never surfaces as an unobserved exception.</remarks>
internal sealed class StoreDeadline : IDisposable
{
    private readonly CancellationTokenSource _source;
    private readonly CancellationToken _caller;
    private readonly TimeSpan _timeout;

    public StoreDeadline(TimeSpan timeout, CancellationToken cancellationToken)
    {
        _caller = cancellationToken;
        _timeout = timeout;
        _source = cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken) : new CancellationTokenSource();
        _source.CancelAfter(timeout);
    }

    /// <summary>Cancelled at the deadline, or when the caller's token is.</summary>
    public CancellationToken Token => _source.Token;

    /// <summary>The call's result; a <see cref="TimeoutException"/> when the deadline passes first.</summary>
    public async Task<T> WaitAsync<T>(Task<T> call)
    {
        try
        {
            return await call.WaitAsync(_source.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException exception) when (!_caller.IsCancellationRequested)
        {
            Observe(call);
            throw TimedOut(exception);
        }
        catch
        {
            Observe(call);
            throw;
        }
    }

    /// <inheritdoc cref="WaitAsync{T}(Task{T})"/>
    public async Task WaitAsync(Task call)
    {
        try
        {
            await call.WaitAsync(_source.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException exception) when (!_caller.IsCancellationRequested)
        {
            Observe(call);
            throw TimedOut(exception);
        }
        catch
        {
            Observe(call);
            throw;
        }
    }

    public void Dispose() => _source.Dispose();

    /// <summary>Waits for a call that takes no token (a StackExchange.Redis command) at most <paramref name="timeout"/>.</summary>
    public static async Task<T> BoundAsync<T>(Task<T> call, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            return await call.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Observe(call);
            throw;
        }
    }

    /// <inheritdoc cref="BoundAsync{T}(Task{T}, TimeSpan, CancellationToken)"/>
    public static async Task BoundAsync(Task call, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await call.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Observe(call);
            throw;
        }
    }

    private static void Observe(Task task) => LlmGateway.Redis.RedisConnection.Observe(task);

    private TimeoutException TimedOut(Exception cancelled) =>
        new($"The store did not answer within {_timeout.TotalMilliseconds:0} ms (Gateway:Store:Timeout).", cancelled);
}
