using System.Globalization;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Tools;

/// <summary>The gateway's own answers to a tool call: refusals (counted and audited as denied) and errors after forwarding.</summary>
internal static class ToolCallResponses
{
    /// <summary>Refuses the call: the audit record says denied with the error code, and the rejection is counted.</summary>
    public static Task RejectAsync(HttpContext context, ToolCallAudit audit, GatewayError error, GatewayMetrics metrics)
    {
        audit.Reason = error.Code;
        audit.Denied = true;
        metrics.RecordRejection(audit.Caller?.User ?? string.Empty, error.Code);
        Tracing.ServerSpans.Fail(error.Code, error.Status);
        return WriteErrorAsync(context, null, error, audit.RequestId);
    }

    public static Task WriteErrorAsync(HttpContext context, ToolCall? call, GatewayError error, string? requestId = null)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            return Task.CompletedTask;
        }

        response.Clear();
        response.Headers[GatewayHeaders.RequestId] = call?.RequestId ?? requestId;
        if (call is not null)
        {
            response.Headers[GatewayHeaders.Attempts] = call.Attempts.ToString(CultureInfo.InvariantCulture);
        }

        return error.WriteAsync(response);
    }

    /// <summary>Answers with a stored tool response (an idempotent replay or a run-cache hit), marked by <paramref name="markHeader"/>.</summary>
    public static async Task WriteStoredAsync(HttpContext context, string requestId, StoredToolResponse stored, string markHeader, string markValue)
    {
        var response = context.Response;
        response.Clear();
        response.StatusCode = stored.Status;
        foreach (var (name, values) in stored.Headers)
        {
            response.Headers.Append(name, values);
        }

        response.Headers[GatewayHeaders.RequestId] = requestId;
        response.Headers[GatewayHeaders.Attempts] = "0";
        response.Headers[markHeader] = markValue;
        if (stored.Body is { } body)
        {
            response.ContentLength = body.Length;
            await response.Body.WriteAsync(body, context.RequestAborted).ConfigureAwait(false);
        }
        else
        {
            response.Headers[ToolConstants.ReplayBodyHeader] = "omitted";
            response.ContentLength = 0;
        }
    }

    public static GatewayError Denied(string tool, string method, string path, string why) =>
        GatewayError.PermissionDenied($"Your key may not call {method} {path} on tool '{tool}': {why}.");

    public static GatewayError StoreUnavailable() =>
        GatewayError.StoreUnavailable("The gateway's store did not answer in time, and its policy (Gateway:Store:OnUnavailable) is to refuse calls it cannot account for. Retry shortly.");

    public static GatewayError StoreFull() =>
        new(StatusCodes.Status503ServiceUnavailable, GatewayErrorCodes.StoreFull, "server_error",
            "The gateway's idempotency store is full (Gateway:Idempotency:MaxEntries/MaxBytes): the call was not made. Retry shortly, when older keys have expired.",
            true, null, TimeSpan.FromSeconds(1));
}
