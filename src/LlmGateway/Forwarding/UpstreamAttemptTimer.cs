namespace LlmGateway.Forwarding;

/// <summary>
/// Bounds one upstream attempt until its response headers arrive. YARP's own activity timeout would also
/// cut a long, healthy stream after it, so the gateway gives YARP a generous one and enforces the attempt
/// timeout here; once headers are in, the stream idle timeout of <see cref="SseRelay"/> takes over.
/// </summary>
internal sealed class UpstreamAttemptTimer : IDisposable
{
    private readonly CancellationTokenSource _source;

    public UpstreamAttemptTimer(TimeSpan timeout, CancellationToken requestAborted)
    {
        _source = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
        _source.CancelAfter(timeout);
    }

    public CancellationToken Token => _source.Token;

    /// <summary>True when the attempt was cut by its timeout (not by the caller going away).</summary>
    public bool TimedOut { get; private set; }

    public void HeadersReceived()
    {
        try
        {
            _source.CancelAfter(Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public bool CheckTimedOut(CancellationToken requestAborted)
    {
        TimedOut = _source.IsCancellationRequested && !requestAborted.IsCancellationRequested;
        return TimedOut;
    }

    public void Dispose() => _source.Dispose();
}
