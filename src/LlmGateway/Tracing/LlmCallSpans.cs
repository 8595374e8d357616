using System.Diagnostics;
using System.Text;
using LlmGateway.Configuration;
using LlmGateway.Forwarding;
using LlmGateway.Resilience;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Tracing;

/// <summary>
/// The spans of one LLM call: the call span ("{operation} {model}", kind Server, <see cref="ServerSpans"/>) with the GenAI
/// attributes, and one attempt span (kind Client) per upstream attempt. Every method is a no-op when the call is not
/// traced, and allocates nothing then.
/// </summary>
internal static class LlmCallSpans
{
    /// <summary>Custom property of a call span whose request and answer content are captured (Gateway:Tracing:CaptureContent).</summary>
    private const string CaptureContentProperty = "llm_gateway.capture_content";

    public static string OperationOf(LlmEndpoint endpoint) => endpoint switch
    {
        LlmEndpoint.Completions => TracingTags.TextCompletion,
        LlmEndpoint.Embeddings => TracingTags.Embeddings,
        LlmEndpoint.CountTokens => TracingTags.CountTokens,
        _ => TracingTags.Chat,
    };

    public static string SystemOf(ApiDialect dialect) => dialect == ApiDialect.Anthropic ? "anthropic" : "openai";

    /// <summary>Starts the call span, before anything is read: rejections are traced too.</summary>
    public static Activity? Start(HttpRequest request, LlmEndpoint endpoint) => ServerSpans.Start(OperationOf(endpoint), target: null, request);

    /// <summary>What the call asks for, once it is authenticated, parsed and routed.</summary>
    public static void Describe(LlmCall call, bool captureContent)
    {
        if (GatewayTracing.CurrentServerSpan() is not { IsAllDataRequested: true } span)
        {
            return;
        }

        var system = SystemOf(call.RequestedModel.Provider.Api);
        span.DisplayName = OperationOf(call.Endpoint) + " " + call.RequestedModel.Name;
        span.SetTag(TracingTags.System, system);
        span.SetTag(TracingTags.ProviderName, system);
        span.SetTag(TracingTags.RequestModel, call.RequestedModel.Name);
        span.SetTag(TracingTags.User, call.Caller.User);
        span.SetTag(TracingTags.RequestId, call.RequestId);
        span.SetTag(TracingTags.Stream, call.Request.Stream);
        if (captureContent)
        {
            span.SetCustomProperty(CaptureContentProperty, true);
            span.SetTag(TracingTags.RequestContent, Content(call.Body.Span));
        }
    }

    /// <summary>Ends the cache lookup span, and puts its result (hit, miss, bypass) on it and on the call span.</summary>
    public static void CacheLooked(Activity? lookup, string? result)
    {
        if (lookup is null)
        {
            return;
        }

        var value = result switch
        {
            Caching.CacheHeaders.Hit => Telemetry.TelemetryTagValues.Hit,
            Caching.CacheHeaders.Miss => Telemetry.TelemetryTagValues.Miss,
            _ => Telemetry.TelemetryTagValues.Bypass,
        };
        lookup.SetTag(TracingTags.Cache, value);
        lookup.Parent?.SetTag(TracingTags.Cache, value);
        lookup.Dispose();
    }

    /// <summary>Ends the admission span; a refusal names its error code there.</summary>
    public static void Admitted(Activity? admission, Errors.GatewayError? refusal)
    {
        if (admission is null)
        {
            return;
        }

        if (refusal is { } refused)
        {
            admission.SetTag(TracingTags.ErrorType, refused.Code);
            admission.SetStatus(ActivityStatusCode.Error, refused.Code);
        }

        admission.Dispose();
    }

    /// <summary>Starts the span of one upstream attempt, a child of the call span; it is Activity.Current while the attempt runs.</summary>
    public static Activity? StartAttempt(LlmCall call)
    {
        if (GatewayTracing.CurrentServerSpan() is not { IsAllDataRequested: true })
        {
            return null;
        }

        var model = call.ServedModel;
        var span = GatewayTracing.Source.StartActivity(OperationOf(call.Endpoint) + " " + model.UpstreamModel, ActivityKind.Client);
        if (span is { IsAllDataRequested: true })
        {
            span.SetTag(TracingTags.OperationName, OperationOf(call.Endpoint));
            span.SetTag(TracingTags.System, SystemOf(model.Provider.Api));
            span.SetTag(TracingTags.RequestModel, model.UpstreamModel);
            span.SetTag(TracingTags.Provider, model.Provider.Name);
            span.SetTag(TracingTags.ServerAddress, model.Provider.UriFor(call.Endpoint).Host);
            span.SetTag(TracingTags.Attempt, call.Attempts);
        }

        return span;
    }

    /// <summary>Ends an attempt span with the upstream's status and, when it failed, why.</summary>
    public static void EndAttempt(Activity? span, LlmCall call, AttemptOutcome outcome)
    {
        if (span is null)
        {
            return;
        }

        if (call.UpstreamStatus != 0)
        {
            span.SetTag(TracingTags.HttpStatus, call.UpstreamStatus);
        }

        if (outcome.Kind != AttemptKind.Delivered || call.PendingError is not null)
        {
            var reason = outcome.Kind != AttemptKind.Delivered ? outcome.Reason : call.PendingError!.Value.Code;
            span.SetTag(TracingTags.ErrorType, reason);
            span.SetStatus(ActivityStatusCode.Error, reason);
        }

        span.Dispose();
    }

    /// <summary>Whether the current call's content is captured (then a stream keeps its delivered text for <see cref="CaptureStreamedAnswer"/>).</summary>
    public static bool CapturesContent() =>
        GatewayTracing.CurrentServerSpan() is { } span && span.GetCustomProperty(CaptureContentProperty) is true;

    /// <summary>A streamed answer's content on the call span: the text delivered to the caller (not the raw events).</summary>
    public static void CaptureStreamedAnswer(Accounting.DeliveredText? text)
    {
        if (text is not null && GatewayTracing.CurrentServerSpan() is { } span && span.GetCustomProperty(CaptureContentProperty) is true)
        {
            span.SetTag(TracingTags.ResponseContent, Content(text.Utf8));
        }
    }

    /// <summary>The answer's content on the call span, when its request's content was captured (buffered JSON answers).</summary>
    public static void CaptureAnswer(ReadOnlySpan<byte> json)
    {
        if (GatewayTracing.CurrentServerSpan() is { } span && span.GetCustomProperty(CaptureContentProperty) is true)
        {
            span.SetTag(TracingTags.ResponseContent, Content(json));
        }
    }

    /// <summary>What was served: model, usage, cost, finish reason, fallbacks and downgrades, status.</summary>
    public static void Complete(LlmCall call, int status)
    {
        if (GatewayTracing.CurrentServerSpan() is not { IsAllDataRequested: true } span)
        {
            return;
        }

        span.SetTag(TracingTags.HttpStatus, status);
        span.SetTag(TracingTags.Outcome, call.Outcome.ToString());
        span.SetTag(TracingTags.Attempts, call.Attempts);
        span.SetTag(TracingTags.ServedModel, call.ServedModel.Name);
        span.SetTag(TracingTags.Provider, call.ServedModel.Provider.Name);
        span.SetTag(TracingTags.Downgrade, call.Downgrade);
        span.SetTag(TracingTags.ResponseModel, call.Answer.Model);
        if (call.Answer.FinishReason is { } finish)
        {
            span.SetTag(TracingTags.FinishReasons, new[] { finish });
        }

        if (call.HasUsage)
        {
            var usage = call.Usage;
            span.SetTag(TracingTags.InputTokens, usage.InputTokens);
            span.SetTag(TracingTags.OutputTokens, usage.OutputTokens);
            span.SetTag(TracingTags.CacheReadInputTokens, usage.CachedInputTokens);
            span.SetTag(TracingTags.CacheCreationInputTokens, usage.CacheWriteTokens);
            span.SetTag(TracingTags.CostUsd, (double)call.CostUsd);
        }

        if (StepOf(call) is { } step)
        {
            span.SetTag(TracingTags.Step, step);
        }

        if (status >= 400 && span.Status != ActivityStatusCode.Error)
        {
            var errorType = call.PendingError?.Code ?? status.ToString(System.Globalization.CultureInfo.InvariantCulture);
            span.SetTag(TracingTags.ErrorType, errorType);
            span.SetStatus(ActivityStatusCode.Error, errorType);
        }
    }

    /// <summary>The call's step within its run (llm_gateway.step), as the admission store counted it; null outside a run or when the store did not answer.</summary>
    private static long? StepOf(LlmCall call) => call.Step;

    private static string Content(ReadOnlySpan<byte> utf8) => utf8.Length <= TracingTags.MaxContentChars
        ? Encoding.UTF8.GetString(utf8)
        : Encoding.UTF8.GetString(utf8[..TracingTags.MaxContentChars]) + "…";
}
