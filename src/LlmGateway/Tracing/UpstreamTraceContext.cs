using System.Diagnostics;
using System.Net.Http.Headers;
using Microsoft.Net.Http.Headers;

namespace LlmGateway.Tracing;

/// <summary>
/// The W3C trace context sent to a provider or tool: the caller's <c>traceparent</c>/<c>tracestate</c> (and a legacy
/// <c>Request-Id</c>) out, the current span's in. While an attempt runs the current span is its attempt span, so the
/// provider's spans hang under the attempt; untraced, it is ASP.NET Core's request activity (same trace as the caller).
/// </summary>
/// <remarks>
/// Done here rather than by HttpClient's propagation (UpstreamHttpClient sets none): HttpClient would inject its own
/// System.Net.Http activity, a child of the attempt that the gateway never exports, and would keep a caller's
/// traceparent that YARP copied onto the request.
/// </remarks>
internal static class UpstreamTraceContext
{
    private const string RequestIdHeader = "Request-Id";

    public static void Apply(HttpRequestHeaders headers)
    {
        headers.Remove(HeaderNames.TraceParent);
        headers.Remove(HeaderNames.TraceState);
        headers.Remove(RequestIdHeader);
        if (Activity.Current is not { IdFormat: ActivityIdFormat.W3C } span)
        {
            return;
        }

        // Activity.Id is "00-{trace id}-{span id}-{flags}" for a W3C activity: the traceparent value itself, built once per span.
        headers.TryAddWithoutValidation(HeaderNames.TraceParent, span.Id);
        if (span.TraceStateString is { Length: > 0 } state)
        {
            headers.TryAddWithoutValidation(HeaderNames.TraceState, state);
        }
    }
}
