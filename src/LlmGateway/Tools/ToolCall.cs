using LlmGateway.Identity;

namespace LlmGateway.Tools;

/// <summary>The state of one tool call, shared by the handler, the retry predicate and the transformer.</summary>
internal sealed class ToolCall
{
    public ToolCall(string requestId, CallerKey caller, string? runId, ToolRoute route, string method, string path, Uri destination)
    {
        RequestId = requestId;
        Caller = caller;
        RunId = runId;
        Route = route;
        Method = method;
        Path = path;
        Destination = destination;
    }

    public string RequestId { get; }

    public CallerKey Caller { get; }

    public string? RunId { get; }

    public ToolRoute Route { get; }

    public string Method { get; }

    /// <summary>The path below /tools/{tool}, without the query.</summary>
    public string Path { get; }

    public Uri Destination { get; }

    /// <summary>The effective idempotency key (the caller's, or derived from X-Run-Id and X-Gateway-Step), forwarded to the tool.</summary>
    public string? IdempotencyKey { get; set; }

    /// <summary>The store key of an approved call ("approval:" + id): the approval, not the caller's key, makes it one execution.</summary>
    public string? IdempotencyScope { get; set; }

    /// <summary>Retrying after a timeout, broken connection or transient status cannot repeat an effect.</summary>
    public bool RetrySafe { get; set; }

    /// <summary>Buffer the response (up to <see cref="MaxStoredBytes"/>) to store it for replay.</summary>
    public bool BufferResponse { get; set; }

    public long MaxStoredBytes { get; set; }

    /// <summary>X-Gateway-Cache on the tool's answer: MISS for a read the run cache may keep; null otherwise.</summary>
    public string? CacheHeader { get; set; }

    public int Attempts { get; set; }

    public int UpstreamStatus { get; set; }

    /// <summary>The current attempt's timeout; stopped once a streamed response starts.</summary>
    public CancellationTokenSource? AttemptTimeout { get; set; }

    /// <summary>Set by the transformer when the current attempt's status is held back for a retry.</summary>
    public TimeSpan? HeldBackRetryAfter { get; set; }

    public bool HeldBack { get; set; }

    /// <summary>Set by the transformer when reading a buffered response failed before anything reached the caller.</summary>
    public ToolAttemptKind? BodyFailure { get; set; }

    /// <summary>The tool's response reached the caller (at least its headers).</summary>
    public bool ResponseRelayed { get; set; }

    /// <summary>The response to store for replay (buffered path only).</summary>
    public StoredToolResponse? Stored { get; set; }

    public bool MayHoldBack(int status) =>
        RetrySafe && Attempts < Route.Runtime.Settings.MaxAttempts && ToolConstants.IsRetryableStatus(status);

    public void StopAttemptTimer() => AttemptTimeout?.CancelAfter(Timeout.InfiniteTimeSpan);
}
