using System.Net.Sockets;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.CircuitBreaker;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.Tools;

/// <summary>
/// Sends an admitted tool call to its tool: takes one of the tool's concurrency slots, then forwards through YARP inside
/// the tool's retry and circuit-breaker pipeline, one fresh attempt timeout per attempt.
/// </summary>
internal sealed class ToolForwarder(IHttpForwarder forwarder, UpstreamHttpClient client, ToolForwardingTransformer transformer, GatewayMetrics metrics, ILogger<ToolForwarder> logger)
{
    /// <summary>Takes a concurrency slot (503 when the tool's slots and queue are full), then forwards.</summary>
    public async Task SendAsync(HttpContext context, ToolCall call, ReadOnlyMemory<byte>? body, ToolCallAudit audit)
    {
        var route = call.Route;
        var entered = false;
        try
        {
            entered = await route.Runtime.EnterAsync(route.Options.Timeout, context.RequestAborted).ConfigureAwait(false);
            if (!entered)
            {
                await ToolCallResponses.RejectAsync(context, audit, GatewayError.UpstreamUnavailable(
                    $"The tool '{route.Name}' already has {route.Options.MaxConcurrency} calls in flight and {route.Options.MaxQueue} waiting (Gateway:Tools:{route.Name}:MaxConcurrency). Retry shortly.",
                    shouldRetry: true, TimeSpan.FromSeconds(1)), metrics).ConfigureAwait(false);
                return;
            }

            await ForwardAsync(context, call, body, audit).ConfigureAwait(false);
        }
        finally
        {
            if (entered)
            {
                route.Runtime.Exit();
            }

            audit.Attempts = call.Attempts;
        }
    }

    private async Task ForwardAsync(HttpContext context, ToolCall call, ReadOnlyMemory<byte>? body, ToolCallAudit audit)
    {
        context.Features.Set(call);
        var route = call.Route;
        var resilience = ResilienceContextPool.Shared.Get(context.RequestAborted);
        resilience.Properties.Set(ToolRuntime.CallKey, call);
        ToolAttempt outcome;
        try
        {
            outcome = await route.Runtime.Pipeline.ExecuteAsync(
                static (ctx, state) => state.Forwarder.AttemptAsync(state.Context, state.Call, state.Body, ctx.CancellationToken),
                resilience,
                (Forwarder: this, Context: context, Call: call, Body: body)).ConfigureAwait(false);
        }
        catch (BrokenCircuitException ex)
        {
            audit.Reason = GatewayErrorCodes.UpstreamUnavailable;
            await ToolCallResponses.WriteErrorAsync(context, call, GatewayError.UpstreamUnavailable(
                $"The tool '{route.Name}' is failing and its circuit is open; calls are refused until it may close.", shouldRetry: true, ex.RetryAfter ?? route.Options.Breaker.BreakDuration)).ConfigureAwait(false);
            metrics.RecordRejection(call.Caller.User, GatewayErrorCodes.UpstreamUnavailable);
            return;
        }
        finally
        {
            ResilienceContextPool.Shared.Return(resilience);
        }

        audit.Reason = outcome.Kind switch
        {
            ToolAttemptKind.Response => "completed",
            ToolAttemptKind.HeldBack => GatewayErrorCodes.UpstreamError,
            ToolAttemptKind.Timeout => GatewayErrorCodes.UpstreamTimeout,
            ToolAttemptKind.ClientAborted => "client_aborted",
            ToolAttemptKind.ResponseBroken => "response_broken",
            _ => GatewayErrorCodes.UpstreamError,
        };
        if (call.ResponseRelayed || context.Response.HasStarted || outcome.Kind == ToolAttemptKind.ClientAborted)
        {
            return;
        }

        ToolLog.UpstreamFailed(logger, call.RequestId, route.Name, call.Attempts, outcome.Reason);
        var error = outcome.Kind switch
        {
            ToolAttemptKind.Timeout => GatewayError.UpstreamTimeout(
                $"The tool '{route.Name}' did not answer within {route.Options.Timeout.TotalSeconds:0.###} s (Gateway:Tools:{route.Name}:Timeout), after {call.Attempts} attempt(s)."),
            ToolAttemptKind.HeldBack => GatewayError.UpstreamError($"The tool '{route.Name}' answered {outcome.Status} on every attempt ({call.Attempts})."),
            _ => GatewayError.UpstreamError($"The tool '{route.Name}' could not be reached ({outcome.Reason}) after {call.Attempts} attempt(s)."),
        };
        await ToolCallResponses.WriteErrorAsync(context, call, error).ConfigureAwait(false);
    }

    /// <summary>One attempt: a fresh copy of the buffered body, a fresh attempt timeout, one YARP forward.</summary>
    private async ValueTask<ToolAttempt> AttemptAsync(HttpContext context, ToolCall call, ReadOnlyMemory<byte>? body, CancellationToken cancellationToken)
    {
        call.Attempts++;
        call.HeldBack = false;
        call.HeldBackRetryAfter = null;
        call.BodyFailure = null;
        var request = context.Request;
        if (body is { } bytes)
        {
            request.Body = new ReadOnlyMemoryStream(bytes);
            request.ContentLength = bytes.Length;
            request.Headers.Remove("Transfer-Encoding");
        }

        if (!context.Response.HasStarted)
        {
            context.Response.Clear();
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(call.Route.Options.Timeout);
        call.AttemptTimeout = timeout;
        ForwarderError result;
        var span = Tracing.ToolCallSpans.StartAttempt(call);
        try
        {
            result = await forwarder.SendAsync(context, call.Route.BaseUrl, client.Invoker, call.Route.Runtime.RequestConfig, transformer, timeout.Token).ConfigureAwait(false);
        }
        finally
        {
            call.AttemptTimeout = null;
        }

        var attempt = Classify(context, call, result, timeout);
        Tracing.ToolCallSpans.EndAttempt(span, attempt);
        return attempt;
    }

    private static ToolAttempt Classify(HttpContext context, ToolCall call, ForwarderError result, CancellationTokenSource timeout)
    {

        if (context.RequestAborted.IsCancellationRequested)
        {
            return new ToolAttempt(ToolAttemptKind.ClientAborted, call.UpstreamStatus);
        }

        if (call.HeldBack)
        {
            return new ToolAttempt(ToolAttemptKind.HeldBack, call.UpstreamStatus, call.HeldBackRetryAfter);
        }

        if (call.BodyFailure is { } failure)
        {
            return new ToolAttempt(failure, call.UpstreamStatus);
        }

        if (result == ForwarderError.None)
        {
            return new ToolAttempt(ToolAttemptKind.Response, call.UpstreamStatus);
        }

        if (call.ResponseRelayed || context.Response.HasStarted)
        {
            return new ToolAttempt(ToolAttemptKind.ResponseBroken, call.UpstreamStatus);
        }

        if (timeout.IsCancellationRequested || result == ForwarderError.RequestTimedOut)
        {
            return new ToolAttempt(ToolAttemptKind.Timeout);
        }

        return new ToolAttempt(IsConnectionRefused(context.GetForwarderErrorFeature()?.Exception) ? ToolAttemptKind.ConnectionRefused : ToolAttemptKind.ConnectionFailed);
    }

    private static bool IsConnectionRefused(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
            {
                return true;
            }
        }

        return false;
    }
}
