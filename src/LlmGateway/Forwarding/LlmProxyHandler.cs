using System.Buffers;
using System.Diagnostics;
using LlmGateway.Budgets;
using LlmGateway.Caching;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Identity;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.Forwarding;

/// <summary>
/// The request path of /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/responses:
/// authenticate, read and check the body, pick the provider by model, forward through YARP, then account
/// for what was served. Every refusal happens before any upstream call.
/// </summary>
internal sealed class LlmProxyHandler
{
    private static readonly ForwarderRequestConfig RequestConfig = new()
    {
        // The attempt timeout is enforced by UpstreamAttemptTimer and stalls by the stream idle timeout;
        // YARP's activity timeout would also cut long healthy streams, so it only backstops them here.
        ActivityTimeout = TimeSpan.FromHours(1),
        AllowResponseBuffering = false,
    };

    private readonly GatewayConfigProvider _config;
    private readonly IHttpForwarder _forwarder;
    private readonly UpstreamHttpClient _client;
    private readonly LlmForwardingTransformer _transformer;
    private readonly GatewayMetrics _metrics;
    private readonly BudgetGuard _budgets;
    private readonly ResponseCache _cache;
    private readonly ILogger<LlmProxyHandler> _logger;

    public LlmProxyHandler(GatewayConfigProvider config, IHttpForwarder forwarder, UpstreamHttpClient client, LlmForwardingTransformer transformer, GatewayMetrics metrics, BudgetGuard budgets, ResponseCache cache, ILogger<LlmProxyHandler> logger)
    {
        _budgets = budgets;
        _cache = cache;
        _config = config;
        _forwarder = forwarder;
        _client = client;
        _transformer = transformer;
        _metrics = metrics;
        _logger = logger;
    }

    public async Task HandleAsync(HttpContext context, LlmEndpoint endpoint)
    {
        var start = Stopwatch.GetTimestamp();
        var config = _config.Current;
        var requestId = RequestIds.For(context);

        string? runId = null;
        var error = CallerAuthenticator.Authenticate(context.Request, config, out var caller)
            ?? CallerAuthenticator.ReadRunId(context.Request, out runId);
        if (error is { } authError)
        {
            await RejectAsync(context, caller, authError);
            return;
        }

        var (buffer, length, readError) = await RequestBodyReader.ReadAsync(context.Request, config.Options.Limits.MaxRequestBodyBytes, context.RequestAborted);
        if (readError is { } bodyError)
        {
            await RejectAsync(context, caller, bodyError);
            return;
        }

        try
        {
            var body = buffer.AsMemory(0, length);
            var parseError = LlmRequestInfo.TryParse(body.Span, out var request, out var param);
            if (parseError is not null)
            {
                await RejectAsync(context, caller, GatewayError.InvalidRequest(parseError, param));
                return;
            }

            if (!config.Models.TryGetValue(request.Model!, out var model))
            {
                await RejectAsync(context, caller, GatewayError.ModelNotFound(request.Model!));
                return;
            }

            if (!caller.MayUse(model.Name))
            {
                await RejectAsync(context, caller, GatewayError.PermissionDenied($"Your key may not use the model '{model.Name}'. GET /v1/models lists the models it may use."));
                return;
            }

            if (!model.Provider.IsUsable)
            {
                await RejectAsync(context, caller, GatewayError.UpstreamUnavailable(
                    $"The model '{model.Name}' is served by provider '{model.Provider.Name}', which has no API key configured (set {model.Provider.Options.ApiKeyEnv}).", shouldRetry: false));
                return;
            }

            var call = new LlmCall(requestId, caller, runId, endpoint, model, request, config.CallLimits, start);

            // Response cache and run replay (Caching/): lookup before admission; a hit or replayed step is served below.
            await using var cached = await _cache.BeginAsync(context, config, call, body, context.RequestAborted);
            if (cached.Error is { } cacheError)
            {
                await RejectAsync(context, caller, cacheError);
                return;
            }

            // Streamed generations always carry usage from upstream so they can be charged exactly; when the
            // caller did not ask for it, the relay removes it again.
            call.InjectedIncludeUsage = request.Stream && request.IncludeUsage != true && endpoint is LlmEndpoint.ChatCompletions or LlmEndpoint.Completions;
            var rewriteModel = model.UpstreamModel != request.Model ? model.UpstreamModel : null;
            if (call.InjectedIncludeUsage || rewriteModel is not null)
            {
                body = RequestBodyRewriter.Rewrite(body.Span, rewriteModel, call.InjectedIncludeUsage);
            }

            if (await _budgets.AdmitAsync(config, call, body, context.RequestAborted, free: cached.IsFree) is { } refusal)
            {
                RateLimitHeaders.Write(context.Response.Headers, call.Admission);
                await RejectAsync(context, caller, refusal);
                return;
            }

            try
            {
                if (!await cached.TryServeAsync())
                {
                    await ForwardAsync(context, call, body);
                }
            }
            finally
            {
                Complete(context, call);
                await _budgets.CompleteAsync(call);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer!);
        }
    }

    private async Task ForwardAsync(HttpContext context, LlmCall call, ReadOnlyMemory<byte> body)
    {
        context.Features.Set(call);
        var request = context.Request;
        request.Body = new ReadOnlyMemoryStream(body);
        request.ContentLength = body.Length;
        request.Headers.Remove("Transfer-Encoding");

        using var attempt = new UpstreamAttemptTimer(_config.Current.Options.Resilience.AttemptTimeout, context.RequestAborted);
        context.Features.Set(attempt);
        var provider = call.ServedModel.Provider;
        var result = await _forwarder.SendAsync(context, provider.ChatCompletions.GetLeftPart(UriPartial.Authority), _client.Invoker, RequestConfig, _transformer, attempt.Token);

        if (result != ForwarderError.None && call.PendingError is null && !context.Response.HasStarted)
        {
            var exception = context.GetForwarderErrorFeature()?.Exception;
            if (context.RequestAborted.IsCancellationRequested)
            {
                call.Outcome = CallOutcome.ClientAborted;
            }
            else if (attempt.CheckTimedOut(context.RequestAborted))
            {
                call.Outcome = CallOutcome.UpstreamFailed;
                call.FailureDetail = "attempt timed out";
                call.PendingError = GatewayError.UpstreamTimeout(
                    $"The provider '{provider.Name}' did not answer within {_config.Current.Options.Resilience.AttemptTimeout.TotalSeconds:0.#} s (Gateway:Resilience:AttemptTimeout).");
            }
            else
            {
                call.Outcome = CallOutcome.UpstreamFailed;
                call.FailureDetail = $"{result}: {exception?.GetType().Name}";
                call.PendingError = GatewayError.UpstreamError($"The provider '{provider.Name}' could not be reached ({Describe(result)}).");
                ForwardingLog.UpstreamFailed(_logger, call.RequestId, provider.Name, 0);
            }
        }

        if (call.PendingError is { } pending && !context.Response.HasStarted)
        {
            context.Response.Clear();
            context.Response.Headers[GatewayHeaders.RequestId] = call.RequestId;
            context.Response.Headers[GatewayHeaders.Attempts] = "1";
            RateLimitHeaders.Write(context.Response.Headers, call.Admission);
            await pending.WriteAsync(context.Response);
        }
    }

    private void Complete(HttpContext context, LlmCall call)
    {
        call.SettleUsage();
        var now = Stopwatch.GetTimestamp();
        var status = call.Outcome == CallOutcome.ClientAborted ? 499 : context.Response.StatusCode;
        var model = call.RequestedModel.Name;
        var served = call.ServedModel;
        var user = call.Caller.User;
        var totalSeconds = Stopwatch.GetElapsedTime(call.StartTimestamp, now).TotalSeconds;
        var upstreamSeconds = call.UpstreamStartTimestamp == 0 ? 0 : Stopwatch.GetElapsedTime(call.UpstreamStartTimestamp, call.UpstreamEndTimestamp == 0 ? now : call.UpstreamEndTimestamp).TotalSeconds;
        double? ttft = call.FirstChunkTimestamp == 0 ? null : Stopwatch.GetElapsedTime(call.StartTimestamp, call.FirstChunkTimestamp).TotalMilliseconds;

        _metrics.RecordRequest(user, model, status, totalSeconds);
        if (call.UpstreamStartTimestamp != 0)
        {
            _metrics.RecordUpstreamDuration(served.Provider.Name, served.Name, upstreamSeconds);

            // What the gateway itself added: time to the upstream request plus time after its headers, for
            // buffered answers; for streams, only the time before the upstream request.
            var before = Stopwatch.GetElapsedTime(call.StartTimestamp, call.UpstreamStartTimestamp).TotalSeconds;
            _metrics.RecordOverhead(before);
        }

        if (ttft is { } first)
        {
            _metrics.RecordTimeToFirstToken(served.Name, first / 1000);
        }

        if (call.HasUsage)
        {
            var usage = call.Usage;
            _metrics.RecordTokens(user, served.Name, usage.InputTokens - usage.CachedInputTokens, usage.OutputTokens, usage.CachedInputTokens);
            _metrics.RecordCost(user, call.Caller.Team ?? "", served.Name, call.CostUsd);
        }

        ForwardingLog.Call(_logger, call.RequestId, call.RunId, call.Caller.Id, user, model, served.Name, status, call.Outcome.ToString(),
            call.Usage.InputTokens, call.Usage.CachedInputTokens, call.Usage.OutputTokens, call.Usage.ReasoningTokens, call.UsageEstimated, call.CostUsd,
            upstreamSeconds * 1000, ttft, totalSeconds * 1000, call.Request.Stream, call.FailureDetail);
    }

    private Task RejectAsync(HttpContext context, CallerKey? caller, GatewayError error)
    {
        // Unknown callers never become a metric label.
        _metrics.RecordRejection(caller?.User ?? "", error.Code);
        return error.WriteAsync(context.Response);
    }

    private static string Describe(ForwarderError error) => error switch
    {
        ForwarderError.Request => "connection failed",
        ForwarderError.RequestTimedOut => "timed out",
        ForwarderError.ResponseHeaders => "bad response headers",
        _ => error.ToString(),
    };
}
