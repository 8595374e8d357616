using System.Buffers;
using System.Diagnostics;
using LlmGateway.Budgets;
using LlmGateway.Caching;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Identity;
using LlmGateway.Resilience;
using LlmGateway.Telemetry;
using LlmGateway.Tracing;
using Microsoft.AspNetCore.Http;
using Polly;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.Forwarding;

/// <summary>
/// The request path of /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses and Anthropic's /v1/messages:
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
    private readonly UpstreamResilience _resilience;
    private readonly ResponseCache _cache;
    private readonly LlmCallRecorder _recorder;
    private readonly ILogger<LlmProxyHandler> _logger;
    private readonly ILogger _audit;

    public LlmProxyHandler(GatewayConfigProvider config, IHttpForwarder forwarder, UpstreamHttpClient client, LlmForwardingTransformer transformer, GatewayMetrics metrics, BudgetGuard budgets, UpstreamResilience resilience, ResponseCache cache, ILogger<LlmProxyHandler> logger, ILoggerFactory loggerFactory, LlmCallRecorder recorder)
    {
        _recorder = recorder;
        _audit = loggerFactory.CreateLogger(AuditLog.Category);
        _budgets = budgets;
        _resilience = resilience;
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
        using var span = LlmCallSpans.Start(context.Request, endpoint);

        string? runId = null;
        var error = CallerAuthenticator.Authenticate(context.Request, config, out var caller)
            ?? CallerAuthenticator.ReadRunId(context.Request, out runId);
        if (error is { } authError)
        {
            await RejectAsync(context, caller, authError, start, model: null);
            return;
        }

        var (buffer, length, readError) = await RequestBodyReader.ReadAsync(context.Request, config.Options.Limits.MaxRequestBodyBytes, context.RequestAborted);
        if (readError is { } bodyError)
        {
            await RejectAsync(context, caller, bodyError, start, model: null);
            return;
        }

        try
        {
            var body = buffer.AsMemory(0, length);
            var parseError = LlmRequestInfo.TryParse(body.Span, out var request, out var param, endpoint);
            if (parseError is not null)
            {
                await RejectAsync(context, caller, GatewayError.InvalidRequest(parseError, param), start, model: null);
                return;
            }

            if (!config.Models.TryGetValue(request.Model!, out var model))
            {
                await RejectAsync(context, caller, GatewayError.ModelNotFound(request.Model!), start, model: null);
                return;
            }

            if (!caller.MayUse(model.Name))
            {
                await RejectAsync(context, caller, GatewayError.PermissionDenied($"Your key may not use the model '{model.Name}'. GET /v1/models lists the models it may use."), start, model.Name);
                return;
            }

            if (model.Provider.Api != ApiDialects.Of(endpoint))
            {
                await RejectAsync(context, caller, GatewayError.InvalidRequest(WrongApi(model, endpoint), "model"), start, model.Name);
                return;
            }

            if (!model.IsUsable)
            {
                await RejectAsync(context, caller, GatewayError.UpstreamUnavailable(
                    $"The model '{model.Name}' is served by provider '{model.Provider.Name}', which has no API key configured (set {model.Provider.Options.ApiKeyEnv}).", shouldRetry: false), start, model.Name);
                return;
            }

            var call = new LlmCall(requestId, caller, runId, endpoint, model, request, body, config.CallLimits, start);
            LlmCallSpans.Describe(call, config.Options.Tracing.CaptureContent);

            // Response cache and run replay (Caching/): lookup before admission; a hit or replayed step is served below.
            // count_tokens answers are never cached, recorded or replayed: they cost nothing and change nothing.
            var lookup = endpoint == LlmEndpoint.CountTokens ? null : GatewayTracing.StartChild(TracingTags.CacheLookupSpan);
            await using var cached = endpoint == LlmEndpoint.CountTokens ? CachedCall.None : await _cache.BeginAsync(context, config, call, body, context.RequestAborted);
            LlmCallSpans.CacheLooked(lookup, cached.Result);
            if (cached.Error is { } cacheError)
            {
                await RejectAsync(context, caller, cacheError, start, model.Name);
                return;
            }

            // Streamed generations always carry usage from upstream so they can be charged exactly; when the
            // caller did not ask for it, the relay removes it again.
            call.InjectedIncludeUsage = request.Stream && request.IncludeUsage != true && endpoint is LlmEndpoint.ChatCompletions or LlmEndpoint.Completions;

            var allowDowngrade = !string.Equals(context.Request.Headers["X-Gateway-No-Downgrade"], "true", StringComparison.OrdinalIgnoreCase);
            var admissionSpan = GatewayTracing.StartChild(TracingTags.AdmissionSpan);
            var admission = await (endpoint == LlmEndpoint.CountTokens
                ? _budgets.AdmitRequestOnlyAsync(config, call, context.RequestAborted)
                : _budgets.AdmitAsync(config, call, body, allowDowngrade, context.RequestAborted, free: cached.IsFree));
            LlmCallSpans.Admitted(admissionSpan, admission);
            if (admission is { } refusal)
            {
                RateLimitHeaders.Write(context.Response.Headers, call.Admission, ApiDialects.Of(endpoint) == ApiDialect.Anthropic);
                await RejectAsync(context, caller, refusal, start, model.Name);
                return;
            }

            try
            {
                if (!await cached.TryServeAsync())
                {
                    await ServeAsync(context, config, call, body);
                }
            }
            finally
            {
                _recorder.Complete(context, call);
                await _budgets.CompleteAsync(call);
                if (call.TicketDeployment is { } ticketed && ticketed == call.Deployment && call.HasUsage)
                {
                    // The deployment's Tpm window holds what the call used, not what it reserved (as the users' windows do).
                    await _resilience.Rates.SettleAsync(ticketed, call.DeploymentTicket, call.Usage.InputTokens + call.Usage.OutputTokens);
                }
                call.DeliveredText?.Dispose();
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer!);
        }
    }

    /// <summary>
    /// The served model, then its fallbacks in order: each through its upstream's retry and circuit policy,
    /// each with the budget reservation moved to that model. Stops at the first answer that reached the caller.
    /// </summary>
    private async Task ServeAsync(HttpContext context, GatewayConfig config, LlmCall call, ReadOnlyMemory<byte> originalBody)
    {
        context.Features.Set(call);

        // The retry budget is a share of calls that go upstream: refusals and cache hits do not earn retries.
        _resilience.RetryBudget.RecordRequest();
        var options = config.Options.Resilience;
        var fallbacks = call.ServedModel.Options.Fallbacks;
        var outcome = AttemptOutcome.Delivered;
        GatewayError? refusal = null;
        for (var i = 0; i <= fallbacks.Count; i++)
        {
            if (i > 0)
            {
                if (!config.Models.TryGetValue(fallbacks[i - 1], out var fallback) || !call.Caller.MayUse(fallback.Name) || !fallback.IsUsable)
                {
                    continue;
                }

                refusal = await _budgets.SwitchModelAsync(config, call, fallback, originalBody, context.RequestAborted);
                if (refusal is not null)
                {
                    continue;
                }

                _metrics.RecordDowngrade(call.ServedModel.Name, fallback.Name, "fallback");
                call.ServedModel = fallback;
                call.Deployment = null;
                call.FailedDeployments = 0;
                call.Downgrade = "fallback";
            }

            using (var attempts = _resilience.Begin(options, call, context.RequestAborted))
            {
                outcome = attempts.Complete(await attempts.ExecuteAsync(static s => s.Handler.AttemptAsync(s.Context, s.Call, s.Body), (Handler: this, Context: context, Call: call, Body: originalBody)));
            }
            if (outcome.Kind == AttemptKind.Delivered || context.RequestAborted.IsCancellationRequested)
            {
                break;
            }

            refusal = null;
        }

        if (context.Response.HasStarted)
        {
            return;
        }

        var error = call.PendingError ?? (outcome.Kind == AttemptKind.Delivered ? (GatewayError?)null : FinalError(call, outcome, options)) ?? refusal;
        if (error is { } pending)
        {
            context.Response.Clear();
            LlmForwardingTransformer.WriteGatewayHeaders(context.Response.Headers, call);
            await pending.WriteAsync(context.Response);
        }
    }

    /// <summary>The body for the attempt's deployment: the caller's bytes unless the model name or include_usage must change.</summary>
    private static ReadOnlyMemory<byte> BodyFor(LlmCall call, ReadOnlyMemory<byte> original)
    {
        var upstreamModel = call.Deployment?.UpstreamModel ?? call.ServedModel.UpstreamModel;
        var rewriteModel = upstreamModel != call.Request.Model ? upstreamModel : null;
        return call.InjectedIncludeUsage || rewriteModel is not null
            ? RequestBodyRewriter.Rewrite(original.Span, rewriteModel, call.InjectedIncludeUsage)
            : original;
    }

    /// <summary>One upstream attempt through YARP; classifies what happened for the retry policy.</summary>
    /// <remarks>
    /// Answers Polly's <see cref="Outcome{TResult}"/> itself, so the pipeline awaits it directly rather than through
    /// one more async wrapper. Needs no cancellation token of its own: YARP ends the attempt when the caller goes away.
    /// </remarks>
    private async ValueTask<Outcome<AttemptOutcome>> AttemptAsync(HttpContext context, LlmCall call, ReadOnlyMemory<byte> originalBody)
    {
        // Built per attempt: the deployment chosen for it may name the model differently upstream.
        var body = BodyFor(call, originalBody);
        call.ResetAttempt();
        call.Attempts++;
        var request = context.Request;
        request.Body = new ReadOnlyMemoryStream(body);
        request.ContentLength = body.Length;
        request.Headers.Remove("Transfer-Encoding");
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Features.Set<IForwarderErrorFeature>(null);

        var timeout = _config.Current.Options.Resilience.AttemptTimeout;
        using var attempt = new UpstreamAttemptTimer(timeout);
        context.Features.Set(attempt);
        var span = LlmCallSpans.StartAttempt(call);
        var result = await _forwarder.SendAsync(context, call.ServedProvider.DestinationPrefix, _client.Invoker, RequestConfig, _transformer, attempt.Token);
        var outcome = Classify(context, call, result, attempt);
        LlmCallSpans.EndAttempt(span, call, outcome);
        return Outcome.FromResult(outcome);
    }

    private AttemptOutcome Classify(HttpContext context, LlmCall call, ForwarderError result, UpstreamAttemptTimer attempt)
    {
        if (call.RetryableStatus != 0)
        {
            return new AttemptOutcome(AttemptKind.Retryable, call.RetryableStatus, call.UpstreamRetryAfter, call.RetryableStatus.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        if (result == ForwarderError.None || call.PendingError is not null || context.Response.HasStarted)
        {
            return AttemptOutcome.Delivered;
        }

        if (context.RequestAborted.IsCancellationRequested)
        {
            call.Outcome = CallOutcome.ClientAborted;
            return AttemptOutcome.Delivered;
        }

        call.Outcome = CallOutcome.UpstreamFailed;
        if (attempt.CheckTimedOut(context.RequestAborted))
        {
            call.FailureDetail = "attempt timed out";
            return new AttemptOutcome(AttemptKind.Retryable, StatusCodes.Status504GatewayTimeout, null, "timeout");
        }

        var exception = context.GetForwarderErrorFeature()?.Exception;
        call.FailureDetail = $"{result}: {exception?.GetType().Name}";
        ForwardingLog.UpstreamFailed(_logger, call.RequestId, call.ServedProvider.Name, 0);
        return new AttemptOutcome(AttemptKind.Retryable, StatusCodes.Status502BadGateway, null, "connection");
    }

    /// <summary>The caller's answer when every attempt and fallback failed: what happened, and when to come back.</summary>
    private static GatewayError FinalError(LlmCall call, AttemptOutcome outcome, ResilienceOptions options)
    {
        var provider = call.ServedProvider.Name;
        var model = call.ServedModel.Name;
        var attempts = call.Attempts == 1 ? "1 attempt" : $"{call.Attempts} attempts";
        var tooLong = call.RetryWaitTooLong && outcome.RetryAfter is { } wait
            ? $" It asked to wait {wait.TotalSeconds:0.#} s, longer than the gateway waits (Gateway:Resilience:MaxRetryWait {options.MaxRetryWait.TotalSeconds:0.#} s)."
            : string.Empty;
        return outcome.Kind switch
        {
            AttemptKind.NoDeployment => GatewayError.UpstreamUnavailable(
                $"No deployment of model '{model}' can take the call now: each has an open circuit, a full bulkhead or no room in its own Rpm/Tpm window.", shouldRetry: true, outcome.RetryAfter ?? TimeSpan.FromSeconds(1)) with { Overloaded = true },
            AttemptKind.CircuitOpen => GatewayError.UpstreamUnavailable(
                $"The provider '{provider}' is failing for model '{model}' and its circuit is open; no request is sent to it until it may close.", shouldRetry: true, outcome.RetryAfter) with { Overloaded = true },
            AttemptKind.BulkheadFull => GatewayError.UpstreamUnavailable(
                $"The provider '{provider}' is at its concurrency limit (Gateway:Providers:{provider}:MaxConcurrency) and its queue is full.", shouldRetry: true, TimeSpan.FromSeconds(1)) with { Overloaded = true },
            _ when outcome.Status == StatusCodes.Status429TooManyRequests => new GatewayError(StatusCodes.Status429TooManyRequests, GatewayErrorCodes.RateLimitExceeded, "rate_limit_error",
                $"The provider '{provider}' is rate limiting model '{model}' ({attempts}).{tooLong}", true, null, outcome.RetryAfter ?? TimeSpan.FromSeconds(1)),
            _ when outcome.Reason == "timeout" => GatewayError.UpstreamTimeout(
                $"The provider '{provider}' did not answer within {options.AttemptTimeout.TotalSeconds:0.#} s (Gateway:Resilience:AttemptTimeout), {attempts}."),
            _ when outcome.Reason == "connection" => GatewayError.UpstreamError($"The provider '{provider}' could not be reached ({attempts})."),
            _ => new GatewayError(StatusCodes.Status502BadGateway, GatewayErrorCodes.UpstreamError, "upstream_error",
                $"The provider '{provider}' answered {outcome.Status} for model '{model}' ({attempts}).{tooLong}", true, null, outcome.RetryAfter) { Overloaded = outcome.Status == 529 },
        };
    }

    private static string WrongApi(ModelRoute model, LlmEndpoint endpoint) => model.Provider.Api == ApiDialect.Anthropic
        ? $"The model '{model.Name}' speaks Anthropic's Messages API (provider '{model.Provider.Name}'): call it on POST /v1/messages."
        : $"The model '{model.Name}' speaks OpenAI's API (provider '{model.Provider.Name}'): call it on POST /v1/chat/completions (or /v1/responses), not on {(endpoint == LlmEndpoint.CountTokens ? "/v1/messages/count_tokens" : "/v1/messages")}.";

    /// <param name="model">The configured model the request named, or null when it named none the config knows.</param>
    private Task RejectAsync(HttpContext context, CallerKey? caller, GatewayError error, long start, string? model)
    {
        // Unknown callers never become a metric label.
        _metrics.RecordRejection(caller?.User ?? "", error.Code);
        ServerSpans.Fail(error.Code, error.Status);
        var runId = context.Request.Headers[GatewayHeaders.RunId].ToString();
        AuditLog.Rejection(_audit, context.Response.Headers[GatewayHeaders.RequestId].ToString(), caller?.Id, caller?.User,
            CallerAuthenticator.IsValidId(runId) ? runId : null, context.Request.Method, context.Request.Path.Value ?? "", error.Status, error.Code, error.Message);

        // A rejection is an answer to the caller too: llm_gateway_requests_total counts it with its status, so the
        // success-ratio alert and the error-ratio panels see budget and rate-limit 429s. Only known callers are
        // counted, and a model the config does not know is never a label.
        if (caller is not null)
        {
            _metrics.RecordRequest(caller.User, model ?? "", error.Status, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return error.WriteAsync(context.Response);
    }
}
