namespace LlmGateway.Resilience;

/// <summary>
/// At most <see cref="Limit"/> requests to one provider at once, with a short queue; beyond it, no wait at all.
/// One slow provider then holds at most its own slots, never the gateway's threads or other providers' connections.
/// </summary>
internal sealed class Bulkhead(int limit, int queue)
{
    private readonly SemaphoreSlim _slots = new(limit, limit);
    private int _waiting;

    public int Limit { get; } = limit;

    public int Queue { get; } = queue;

    public async ValueTask<bool> TryEnterAsync(TimeSpan maxWait, CancellationToken cancellationToken)
    {
        if (_slots.Wait(0, CancellationToken.None))
        {
            return true;
        }

        if (Interlocked.Increment(ref _waiting) > Queue)
        {
            Interlocked.Decrement(ref _waiting);
            return false;
        }

        try
        {
            return await _slots.WaitAsync(maxWait, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    /// <summary>No free slot and no room in the queue: a call now would be refused at once.</summary>
    public bool IsFull => _slots.CurrentCount == 0 && Volatile.Read(ref _waiting) >= Queue;

    public void Exit() => _slots.Release();
}
