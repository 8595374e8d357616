using System.Diagnostics;
using LlmGateway.Tools;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Tracing;

/// <summary>
/// The spans of one tool call: "execute_tool {tool}" (kind Server, <see cref="ServerSpans"/>) and one attempt span (kind
/// Client) per attempt at the tool. No-ops, allocation-free, when the call is not traced.
/// </summary>
internal static class ToolCallSpans
{
    public static Activity? Start(HttpRequest request, string tool)
    {
        var span = ServerSpans.Start(TracingTags.ExecuteTool, tool, request);
        span?.SetTag(TracingTags.ToolName, tool);
        return span;
    }

    public static Activity? StartAttempt(ToolCall call)
    {
        if (GatewayTracing.CurrentServerSpan() is not { IsAllDataRequested: true })
        {
            return null;
        }

        var span = GatewayTracing.Source.StartActivity(call.Method + " " + call.Route.Name, ActivityKind.Client);
        if (span is { IsAllDataRequested: true })
        {
            span.SetTag(TracingTags.ToolName, call.Route.Name);
            span.SetTag(TracingTags.ServerAddress, call.Destination.Host);
            span.SetTag(TracingTags.Attempt, call.Attempts);
        }

        return span;
    }

    public static void EndAttempt(Activity? span, ToolAttempt attempt)
    {
        if (span is null)
        {
            return;
        }

        if (attempt.Status != 0)
        {
            span.SetTag(TracingTags.HttpStatus, attempt.Status);
        }

        if (attempt.Kind != ToolAttemptKind.Response || attempt.Status >= 500)
        {
            var reason = attempt.Kind == ToolAttemptKind.Response ? attempt.Status.ToString(System.Globalization.CultureInfo.InvariantCulture) : attempt.Reason;
            span.SetTag(TracingTags.ErrorType, reason);
            span.SetStatus(ActivityStatusCode.Error, reason);
        }

        span.Dispose();
    }

    /// <summary>Who called, and how the call ended.</summary>
    public static void Complete(Activity? span, ToolCallAudit audit, int status)
    {
        if (span is not { IsAllDataRequested: true })
        {
            return;
        }

        span.SetTag(TracingTags.User, audit.Caller?.User);
        span.SetTag(TracingTags.RequestId, audit.RequestId);
        span.SetTag(TracingTags.HttpStatus, status);
        span.SetTag(TracingTags.Outcome, audit.Reason);
        span.SetTag(TracingTags.Attempts, audit.Attempts);
        if (audit.Step is { } step)
        {
            span.SetTag(TracingTags.Step, step);
        }

        if (audit.Replayed)
        {
            span.SetTag(TracingTags.Cache, Telemetry.TelemetryTagValues.Hit);
        }

        if (status >= 400 && span.Status != ActivityStatusCode.Error)
        {
            span.SetTag(TracingTags.ErrorType, audit.Reason);
            span.SetStatus(ActivityStatusCode.Error, audit.Reason);
        }
    }
}
