using System.Collections.Concurrent;

namespace LlmGateway.Forwarding;

/// <summary>
/// Bounds one upstream attempt until its response headers arrive. YARP's own activity timeout would also
/// cut a long, healthy stream after it, so the gateway gives YARP a generous one and enforces the attempt
/// timeout here; once headers are in, the stream idle timeout of <see cref="SseRelay"/> takes over.
/// </summary>
/// <remarks>
/// The token fires on the timeout only: YARP links the caller's RequestAborted to it itself, so a source linked to
/// it as well would only cost a registration per attempt. Sources of attempts that ended before their timeout are
/// reset and reused, each keeping its timer, so an attempt allocates no source, timer or registration.
/// </remarks>
internal sealed class UpstreamAttemptTimer : IDisposable
{
    private const int MaxPooled = 1024;
    private static readonly ConcurrentQueue<CancellationTokenSource> Pool = new();
    private static int s_pooled;

    private readonly CancellationTokenSource _source;
    private bool _disposed;

    public UpstreamAttemptTimer(TimeSpan timeout)
    {
        if (Pool.TryDequeue(out var pooled))
        {
            Interlocked.Decrement(ref s_pooled);
            _source = pooled;
        }
        else
        {
            _source = new CancellationTokenSource();
        }

        _source.CancelAfter(timeout);
    }

    public CancellationToken Token => _source.Token;

    /// <summary>True when the attempt was cut by its timeout (not by the caller going away).</summary>
    public bool TimedOut { get; private set; }

    public void HeadersReceived()
    {
        if (!_disposed)
        {
            _source.CancelAfter(Timeout.InfiniteTimeSpan);
        }
    }

    public bool CheckTimedOut(CancellationToken requestAborted)
    {
        TimedOut = _source.IsCancellationRequested && !requestAborted.IsCancellationRequested;
        return TimedOut;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;

        // TryReset stops the timer and drops what is still registered; a source whose timeout fired is not reusable.
        if (_source.TryReset())
        {
            if (Interlocked.Increment(ref s_pooled) <= MaxPooled)
            {
                Pool.Enqueue(_source);
                return;
            }

            Interlocked.Decrement(ref s_pooled);
        }

        _source.Dispose();
    }
}
