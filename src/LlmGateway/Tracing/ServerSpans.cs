using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace LlmGateway.Tracing;

/// <summary>
/// Starts the gateway span of one LLM or tool call (kind Server), under the right parent:
/// <list type="number">
/// <item>the caller's <c>traceparent</c> (and <c>tracestate</c>), so the agent's own trace holds the gateway's spans;</item>
/// <item>else, with a run id, the run's trace (<see cref="RunTraceIds"/>): the span is a root of that trace, so a run opens as one trace;</item>
/// <item>else a new trace.</item>
/// </list>
/// </summary>
/// <remarks>
/// Never under ASP.NET Core's request activity: the gateway exports only its own source, so that activity is never
/// exported, and a span under it would point at a parent no backend has. The gateway span stands in for it (hence
/// kind Server) and points straight at the caller's span.
/// </remarks>
internal static class ServerSpans
{
    /// <param name="operation">gen_ai.operation.name, also the span's name until <paramref name="target"/> or a later rename.</param>
    /// <param name="target">The model or tool the span is about, when known: the name becomes "{operation} {target}".</param>
    public static Activity? Start(string operation, string? target, HttpRequest request)
    {
        var source = GatewayTracing.Source;
        if (!source.HasListeners())
        {
            return null;
        }

        // The run id is read again here (the handler reads and checks it after authenticating): only when traced.
        var runId = Identity.CallerAuthenticator.ReadRunId(request, out var id) is null ? id : null;

        ActivityContext parent = default;
        var headers = request.Headers;
        if (headers.TryGetValue(HeaderNames.TraceParent, out var traceParent) && traceParent.Count == 1
            && ActivityContext.TryParse(traceParent[0], headers[HeaderNames.TraceState].ToString() is { Length: > 0 } state ? state : null, isRemote: true, out var caller))
        {
            parent = caller;
        }
        else if (runId is not null)
        {
            // No span id: the span has no parent (RunRootSampler samples it as a root, by this trace id).
            parent = new ActivityContext(RunTraceIds.For(runId), default, ActivityTraceFlags.None);
        }

        var previous = Activity.Current;
        Activity.Current = null;
        var span = source.StartActivity(target is null ? operation : operation + " " + target, ActivityKind.Server, parent);
        if (span is null)
        {
            Activity.Current = previous;
            return null;
        }

        if (span.IsAllDataRequested)
        {
            span.SetTag(TracingTags.OperationName, operation);
            span.SetTag(TracingTags.RunId, runId);
        }

        return span;
    }

    /// <summary>Marks the current gateway span failed with the gateway's error code (never its message: it may quote the request).</summary>
    public static void Fail(string errorType, int status)
    {
        if (GatewayTracing.CurrentServerSpan() is { IsAllDataRequested: true } span)
        {
            span.SetTag(TracingTags.ErrorType, errorType);
            span.SetTag(TracingTags.HttpStatus, status);
            span.SetStatus(ActivityStatusCode.Error, errorType);
        }
    }

    /// <summary>Records the wait before a retry as an event of the current gateway span, with its delay.</summary>
    public static void RetryWait(TimeSpan delay, int retry, string reason)
    {
        if (GatewayTracing.CurrentServerSpan() is { IsAllDataRequested: true } span)
        {
            span.AddEvent(new ActivityEvent(TracingTags.RetryWaitEvent, tags: new ActivityTagsCollection
            {
                [TracingTags.RetryDelayMs] = delay.TotalMilliseconds,
                [TracingTags.Attempt] = retry,
                [TracingTags.RetryReason] = reason,
            }));
        }
    }
}
