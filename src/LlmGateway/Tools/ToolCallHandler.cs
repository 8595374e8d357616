using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Identity;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.CircuitBreaker;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.Tools;

/// <summary>
/// The request path of <c>/tools/{tool}/{**path}</c>: authenticate, find the tool, check the key's rules (reading
/// the body only when a rule constrains it), count the call against the run, answer repeats of an idempotency key from
/// the store, take a concurrency slot, then forward through YARP inside the tool's retry and circuit-breaker pipeline.
/// Every call ends with one audit record.
/// </summary>
internal sealed class ToolCallHandler
{
    private static readonly TimeSpan InFlightPollInterval = TimeSpan.FromMilliseconds(50);

    private readonly GatewayConfigProvider _config;
    private readonly ToolRegistry _tools;
    private readonly IHttpForwarder _forwarder;
    private readonly UpstreamHttpClient _client;
    private readonly ToolForwardingTransformer _transformer;
    private readonly IAdmissionStore _admissions;
    private readonly IIdempotencyStore _idempotency;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger _audit;
    private readonly ILogger<ToolCallHandler> _logger;

    public ToolCallHandler(GatewayConfigProvider config, ToolRegistry tools, IHttpForwarder forwarder, UpstreamHttpClient client, ToolForwardingTransformer transformer,
        IAdmissionStore admissions, IIdempotencyStore idempotency, GatewayMetrics metrics, ILoggerFactory loggerFactory)
    {
        _config = config;
        _tools = tools;
        _forwarder = forwarder;
        _client = client;
        _transformer = transformer;
        _admissions = admissions;
        _idempotency = idempotency;
        _metrics = metrics;
        _audit = loggerFactory.CreateLogger(ToolConstants.AuditCategory);
        _logger = loggerFactory.CreateLogger<ToolCallHandler>();
    }

    public async Task HandleAsync(HttpContext context)
    {
        var audit = new Audit(Stopwatch.GetTimestamp(), RequestIds.For(context), context.Request.Method);
        var rawPath = context.Request.Path.Value ?? "/";
        var slash = rawPath.IndexOf('/', ToolConstants.RoutePrefix.Length);
        audit.Tool = context.Request.RouteValues["tool"] as string ?? string.Empty;
        audit.Path = slash < 0 ? "/" : rawPath[slash..];
        try
        {
            await HandleCoreAsync(context, audit);
        }
        finally
        {
            var status = context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted ? 499 : context.Response.StatusCode;
            var seconds = Stopwatch.GetElapsedTime(audit.Start).TotalSeconds;
            if (audit.Route is not null)
            {
                _metrics.RecordToolCall(audit.Route.Name, ToolConstants.MethodLabel(audit.Method), status, seconds);
            }

            ToolAuditLog.ToolCall(_audit, audit.RequestId, DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture), audit.Caller?.Id, audit.Caller?.User, audit.RunId,
                audit.Tool, audit.Method, audit.Path, audit.Denied ? "denied" : "allowed", audit.Rule, audit.Reason, status, Math.Round(seconds * 1000, 3),
                audit.Attempts, audit.IdempotencyKey, audit.Replayed);
        }
    }

    private async Task HandleCoreAsync(HttpContext context, Audit audit)
    {
        var config = _config.Current;
        var request = context.Request;
        string? runId = null;
        var error = CallerAuthenticator.Authenticate(request, config, out var caller) ?? CallerAuthenticator.ReadRunId(request, out runId);
        audit.Caller = caller;
        audit.RunId = runId;
        if (error is { } authError)
        {
            await RejectAsync(context, audit, authError);
            return;
        }

        var snapshot = _tools.Current;
        if (!snapshot.Tools.TryGetValue(audit.Tool, out var route))
        {
            await RejectAsync(context, audit, new GatewayError(StatusCodes.Status404NotFound, ToolConstants.ToolNotFound, "invalid_request_error",
                $"The tool '{audit.Tool}' does not exist on this gateway (Gateway:Tools).", false));
            return;
        }

        audit.Route = route;
        if (!IsPlainPath(audit.Path))
        {
            await RejectAsync(context, audit, GatewayError.InvalidRequest(
                "Tool paths may not contain an encoded slash or backslash (%2F, %5C, \\) or . and .. segments: rules could not tell where they lead."));
            return;
        }

        var method = audit.Method;
        var path = ToolRule.SplitPath(audit.Path);
        var permissions = snapshot.PermissionsFor(caller, route.Name);
        var rule = permissions?.FindUnconditional(method, path);
        var needsBody = rule is null && permissions is not null && permissions.NeedsBody(method, path);
        if (rule is null && !needsBody)
        {
            await RejectAsync(context, audit, Denied(route.Name, method, audit.Path, permissions is null ? "your key has no rules for this tool" : "no rule of your key allows it"));
            return;
        }

        var idempotencyError = ReadIdempotencyKey(request, runId, out var idempotencyKey);
        audit.IdempotencyKey = idempotencyKey;
        if (idempotencyError is { } keyError)
        {
            await RejectAsync(context, audit, keyError);
            return;
        }

        // The body is read whole only when something needs it: a body rule, the request hash of a keyed call, or a retry.
        var hasBody = request.ContentLength > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0);
        ReadOnlyMemory<byte>? body = null;
        if (hasBody && (needsBody || idempotencyKey is not null || route.Options.MaxAttempts > 1))
        {
            var (bytes, readError) = await ReadBodyAsync(request, config.Options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            if (readError is { } tooLarge)
            {
                await RejectAsync(context, audit, tooLarge);
                return;
            }

            body = bytes;
        }

        if (needsBody)
        {
            rule = permissions!.FindForBody(method, path, body ?? ReadOnlyMemory<byte>.Empty);
            if (rule is null)
            {
                await RejectAsync(context, audit, Denied(route.Name, method, audit.Path, "its JSON body does not satisfy the rule's body constraints"));
                return;
            }
        }

        audit.Rule = rule!.Description;
        var (reservation, refusal) = await AdmitAsync(config, caller, runId, audit.RequestId, context.RequestAborted);
        if (refusal is { } refused)
        {
            await RejectAsync(context, audit, refused);
            return;
        }

        try
        {
            var call = new ToolCall(audit.RequestId, caller, runId, route, method, audit.Path,
                RequestUtilities.MakeDestinationAddress(route.BaseUrl, new PathString(audit.Path), request.QueryString))
            {
                IdempotencyKey = idempotencyKey,
                RetrySafe = idempotencyKey is not null || ToolConstants.IsIdempotentMethod(method),
            };
            await ExecuteAsync(context, call, body, config, audit);
        }
        finally
        {
            if (reservation is not null)
            {
                try
                {
                    // Every admitted tool call counts once against the run's calls ceiling; it costs nothing.
                    await _admissions.SettleAsync(reservation, 0m, 0, CancellationToken.None);
                }
                catch (AdmissionStoreUnavailableException ex)
                {
                    BudgetLog.SettleFailed(_logger, audit.RequestId, reservation.Id, 0m, ex.Message);
                }
            }
        }
    }

    private async Task ExecuteAsync(HttpContext context, ToolCall call, ReadOnlyMemory<byte>? body, GatewayConfig config, Audit audit)
    {
        var route = call.Route;
        var idempotency = config.Options.Idempotency;
        string? storeKey = null;
        IdempotencyClaim? claim = null;
        if (call.IdempotencyKey is { } key)
        {
            storeKey = ScopeKey(call.Caller.User, route.Name, key);
            var hash = RequestHash(call.Method, call.Path, context.Request.QueryString.Value, body);
            var attempts = route.Options.MaxAttempts;
            var claimTtl = route.Options.Timeout * attempts + route.Options.MaxRetryWait * (attempts - 1) + TimeSpan.FromSeconds(30);
            try
            {
                claim = await ClaimAsync(storeKey, hash, claimTtl, idempotency.WaitTimeout, context.RequestAborted);
            }
            catch (IdempotencyStoreFullException ex)
            {
                // Never run without idempotency for lack of room: a repeat of this call could then run twice.
                ToolLog.IdempotencyStoreFull(_logger, call.RequestId, ex.Message);
                await RejectAsync(context, audit, StoreFull());
                return;
            }
            catch (IdempotencyStoreUnavailableException ex)
            {
                var policy = config.Options.Store.OnUnavailable;
                ToolLog.IdempotencyStoreUnavailable(_logger, call.RequestId, policy.ToString(), ex.Message);
                _metrics.RecordStoreUnavailable(policy == StoreFailurePolicy.Allow);
                if (policy == StoreFailurePolicy.Deny)
                {
                    await RejectAsync(context, audit, StoreUnavailable());
                    return;
                }
            }

            switch (claim?.State)
            {
                case IdempotencyState.Completed:
                    audit.Replayed = true;
                    audit.Reason = "replayed";
                    _metrics.RecordIdempotentReplay(route.Name);
                    await ReplayAsync(context, call, claim.Response!);
                    return;
                case IdempotencyState.KeyReused:
                    await RejectAsync(context, audit, new GatewayError(StatusCodes.Status422UnprocessableEntity, GatewayErrorCodes.IdempotencyKeyReused, "invalid_request_error",
                        $"The Idempotency-Key '{key}' was already used for a different request to tool '{route.Name}'. Use a new key for a new request.", false, ToolConstants.IdempotencyKeyHeader));
                    return;
                case IdempotencyState.InFlight:
                    await RejectAsync(context, audit, new GatewayError(StatusCodes.Status409Conflict, GatewayErrorCodes.IdempotencyInProgress, "invalid_request_error",
                        $"A call with the Idempotency-Key '{key}' to tool '{route.Name}' is still in flight after waiting {idempotency.WaitTimeout.TotalSeconds:0.#} s. Retry later to get its result.", true));
                    return;
            }

            call.BufferResponse = claim is not null;
            call.MaxStoredBytes = idempotency.MaxStoredResponseBytes;
        }

        var entered = false;
        try
        {
            entered = await route.Runtime.EnterAsync(route.Options.Timeout, context.RequestAborted);
            if (!entered)
            {
                await RejectAsync(context, audit, GatewayError.UpstreamUnavailable(
                    $"The tool '{route.Name}' already has {route.Options.MaxConcurrency} calls in flight and {route.Options.MaxQueue} waiting (Gateway:Tools:{route.Name}:MaxConcurrency). Retry shortly.",
                    shouldRetry: true, TimeSpan.FromSeconds(1)));
                return;
            }

            await ForwardAsync(context, call, body, audit);
        }
        finally
        {
            if (entered)
            {
                route.Runtime.Exit();
            }

            audit.Attempts = call.Attempts;
            if (claim is { State: IdempotencyState.Claimed })
            {
                await FinishClaimAsync(storeKey!, claim, call, idempotency.Ttl);
            }
        }
    }

    private async Task ForwardAsync(HttpContext context, ToolCall call, ReadOnlyMemory<byte>? body, Audit audit)
    {
        context.Features.Set(call);
        var route = call.Route;
        var resilience = ResilienceContextPool.Shared.Get(context.RequestAborted);
        resilience.Properties.Set(ToolRuntime.CallKey, call);
        ToolAttempt outcome;
        try
        {
            outcome = await route.Runtime.Pipeline.ExecuteAsync(
                static (ctx, state) => state.Handler.AttemptAsync(state.Context, state.Call, state.Body, ctx.CancellationToken),
                resilience,
                (Handler: this, Context: context, Call: call, Body: body));
        }
        catch (BrokenCircuitException ex)
        {
            audit.Reason = GatewayErrorCodes.UpstreamUnavailable;
            await WriteErrorAsync(context, call, GatewayError.UpstreamUnavailable(
                $"The tool '{route.Name}' is failing and its circuit is open; calls are refused until it may close.", shouldRetry: true, ex.RetryAfter ?? route.Options.Breaker.BreakDuration));
            _metrics.RecordRejection(call.Caller.User, GatewayErrorCodes.UpstreamUnavailable);
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

        ToolLog.UpstreamFailed(_logger, call.RequestId, route.Name, call.Attempts, outcome.Reason);
        var error = outcome.Kind switch
        {
            ToolAttemptKind.Timeout => GatewayError.UpstreamTimeout(
                $"The tool '{route.Name}' did not answer within {route.Options.Timeout.TotalSeconds:0.###} s (Gateway:Tools:{route.Name}:Timeout), after {call.Attempts} attempt(s)."),
            ToolAttemptKind.HeldBack => GatewayError.UpstreamError($"The tool '{route.Name}' answered {outcome.Status} on every attempt ({call.Attempts})."),
            _ => GatewayError.UpstreamError($"The tool '{route.Name}' could not be reached ({outcome.Reason}) after {call.Attempts} attempt(s)."),
        };
        await WriteErrorAsync(context, call, error);
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
        try
        {
            result = await _forwarder.SendAsync(context, call.Route.BaseUrl, _client.Invoker, call.Route.Runtime.RequestConfig, _transformer, timeout.Token);
        }
        finally
        {
            call.AttemptTimeout = null;
        }

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

    /// <summary>Claims the key, or waits (bounded) while another call with it is in flight; a claim that is abandoned meanwhile becomes ours.</summary>
    private async Task<IdempotencyClaim> ClaimAsync(string key, string hash, TimeSpan claimTtl, TimeSpan wait, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var claim = await _idempotency.TryBeginAsync(key, hash, claimTtl, cancellationToken);
            if (claim.State != IdempotencyState.InFlight || Stopwatch.GetTimestamp() >= deadline)
            {
                return claim;
            }

            await Task.Delay(InFlightPollInterval, cancellationToken);
        }
    }

    /// <summary>
    /// Stores what the tool answered (any status: a repeat must see the same outcome), or gives the key up when the
    /// tool never answered, so a repeat can execute it (and the tool, given the same Idempotency-Key, can deduplicate).
    /// </summary>
    private async Task FinishClaimAsync(string key, IdempotencyClaim claim, ToolCall call, TimeSpan ttl)
    {
        try
        {
            if (call.Stored is { } stored)
            {
                await _idempotency.CompleteAsync(key, claim, stored, ttl, CancellationToken.None);
            }
            else
            {
                await _idempotency.AbandonAsync(key, claim, CancellationToken.None);
            }
        }
        catch (IdempotencyStoreUnavailableException ex)
        {
            // The claim expires by itself; until then repeats wait and get 409.
            ToolLog.IdempotencyStoreUnavailable(_logger, call.RequestId, "complete", ex.Message);
        }
    }

    private static async Task ReplayAsync(HttpContext context, ToolCall call, StoredToolResponse stored)
    {
        var response = context.Response;
        response.Clear();
        response.StatusCode = stored.Status;
        foreach (var (name, values) in stored.Headers)
        {
            response.Headers.Append(name, values);
        }

        response.Headers[GatewayHeaders.RequestId] = call.RequestId;
        response.Headers[GatewayHeaders.Attempts] = "0";
        response.Headers[ToolConstants.ReplayedHeader] = "true";
        if (stored.Body is { } body)
        {
            response.ContentLength = body.Length;
            await response.Body.WriteAsync(body, context.RequestAborted);
        }
        else
        {
            response.Headers[ToolConstants.ReplayBodyHeader] = "omitted";
            response.ContentLength = 0;
        }
    }

    private async ValueTask<(Reservation? Reservation, GatewayError? Error)> AdmitAsync(GatewayConfig config, CallerKey caller, string? runId, string requestId, CancellationToken cancellationToken)
    {
        var runs = caller.Policy.Runs;
        var admission = new AdmissionRequest
        {
            User = caller.User,
            KeyId = caller.Id,
            RunId = runId,
            RunBudget = new BudgetLimits(0m, 0, runs.Calls),
            RunDeadline = runs.Deadline ?? TimeSpan.Zero,
            ReservationTtl = config.Options.Store.ReservationTtl,
        };

        AdmissionResult result;
        try
        {
            result = await _admissions.ReserveAsync(admission, cancellationToken);
        }
        catch (AdmissionStoreUnavailableException ex)
        {
            var policy = config.Options.Store.OnUnavailable;
            _metrics.RecordStoreUnavailable(policy == StoreFailurePolicy.Allow);
            BudgetLog.StoreUnavailable(_logger, requestId, policy.ToString(), ex.Message);
            return policy == StoreFailurePolicy.Allow ? (null, null) : (null, StoreUnavailable());
        }

        if (result.IsAdmitted)
        {
            return (result.Reservation, null);
        }

        var value = result.LimitValue.ToString("0.######", CultureInfo.InvariantCulture);
        GatewayError error = result.Rejection switch
        {
            AdmissionRejection.RunHalted => new(StatusCodes.Status403Forbidden, GatewayErrorCodes.RunHalted, "permission_error",
                $"The run '{runId}' was halted by an operator (POST /admin/runs/{{id}}/resume lifts it).", false),
            AdmissionRejection.UserHalted => new(StatusCodes.Status403Forbidden, GatewayErrorCodes.UserHalted, "permission_error",
                $"The user '{caller.User}' was halted by an operator.", false),
            AdmissionRejection.RunDeadlineExceeded => new(StatusCodes.Status429TooManyRequests, GatewayErrorCodes.RunDeadlineExceeded, "rate_limit_error",
                $"The run '{runId}' passed its deadline of {value} s from its first call.", false),
            AdmissionRejection.RateLimitExceeded => new(StatusCodes.Status429TooManyRequests, GatewayErrorCodes.RateLimitExceeded, "rate_limit_error",
                $"The run '{runId}' reached a rate or in-flight limit of {value}.", true, null, result.RetryAfter ?? TimeSpan.FromSeconds(1)),
            AdmissionRejection.StoreFull => BudgetGuard.StoreFull(result.RetryAfter),
            _ => new(StatusCodes.Status429TooManyRequests, GatewayErrorCodes.BudgetExceeded, "insufficient_quota",
                result.FailedLimit == AdmissionLimit.Calls
                    ? $"The run '{runId}' has used up its limit of {value} calls (LLM and tool calls together)."
                    : $"The {result.FailedScope.ToString().ToLowerInvariant()} budget is used up ({result.FailedLimit} limit {value}).", false, null, result.RetryAfter),
        };
        return (null, error);
    }

    /// <summary>Idempotency-Key, or one derived from X-Run-Id and X-Gateway-Step: the same step of the same run is one call.</summary>
    private static GatewayError? ReadIdempotencyKey(HttpRequest request, string? runId, out string? key)
    {
        key = null;
        var headers = request.Headers;
        if (headers.TryGetValue(ToolConstants.IdempotencyKeyHeader, out var values) && values.Count > 0)
        {
            var value = values[0];
            if (values.Count > 1 || string.IsNullOrEmpty(value) || value.Length > ToolConstants.MaxIdempotencyKeyLength || !IsVisibleAscii(value))
            {
                return GatewayError.InvalidRequest($"Idempotency-Key must be one value of 1 to {ToolConstants.MaxIdempotencyKeyLength} visible ASCII characters.", ToolConstants.IdempotencyKeyHeader);
            }

            key = value;
            return null;
        }

        if (headers.TryGetValue(ToolConstants.StepHeader, out var steps) && steps.Count > 0)
        {
            var step = steps[0];
            if (runId is null)
            {
                return GatewayError.InvalidRequest("X-Gateway-Step identifies a step of a run: send X-Run-Id with it (or an Idempotency-Key).", ToolConstants.StepHeader);
            }

            if (steps.Count > 1 || !CallerAuthenticator.IsValidId(step))
            {
                return GatewayError.InvalidRequest($"X-Gateway-Step must be one value of 1 to {CallerAuthenticator.MaxRunIdLength} characters: letters, digits and . _ : -", ToolConstants.StepHeader);
            }

            key = "run:" + runId + ":step:" + step;
        }

        return null;
    }

    /// <summary>
    /// Kestrel decodes the path but keeps %2F encoded and has removed dot segments; what is left could still be read as
    /// another path by a tool that decodes again, so it is refused rather than matched segment by segment.
    /// </summary>
    private static bool IsPlainPath(string path)
    {
        if (path.Contains("%2F", StringComparison.OrdinalIgnoreCase) || path.Contains("%5C", StringComparison.OrdinalIgnoreCase) || path.Contains('\\'))
        {
            return false;
        }

        foreach (var segment in path.Split('/'))
        {
            if (segment is "." or "..")
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsVisibleAscii(string value)
    {
        foreach (var c in value)
        {
            if (c is < '!' or > '~')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Keys are scoped per gateway user and tool, and hashed: any caller-chosen text is safe as a store key.</summary>
    private static string ScopeKey(string user, string tool, string key) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(user + "\n" + tool + "\n" + key)));

    private static string RequestHash(string method, string path, string? query, ReadOnlyMemory<byte>? body)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(method.ToUpperInvariant() + "\n" + path + "\n" + query + "\n"));
        if (body is { } bytes)
        {
            hash.AppendData(bytes.Span);
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static async Task<(ReadOnlyMemory<byte> Body, GatewayError? Error)> ReadBodyAsync(HttpRequest request, long limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength > limit)
        {
            return (default, GatewayError.RequestTooLarge(limit));
        }

        using var buffer = new MemoryStream(request.ContentLength is > 0 and < 1 << 20 ? (int)request.ContentLength : 4096);
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                return (default, GatewayError.RequestTooLarge(limit));
            }

            buffer.Write(chunk, 0, read);
        }

        return (buffer.ToArray(), null);
    }

    private static GatewayError Denied(string tool, string method, string path, string why) =>
        GatewayError.PermissionDenied($"Your key may not call {method} {path} on tool '{tool}': {why}.");

    private static GatewayError StoreUnavailable() =>
        new(StatusCodes.Status503ServiceUnavailable, GatewayErrorCodes.StoreUnavailable, "server_error",
            "The gateway's store did not answer in time, and its policy (Gateway:Store:OnUnavailable) is to refuse calls it cannot account for. Retry shortly.",
            true, null, TimeSpan.FromSeconds(1));

    private static GatewayError StoreFull() =>
        new(StatusCodes.Status503ServiceUnavailable, GatewayErrorCodes.StoreFull, "server_error",
            "The gateway's idempotency store is full (Gateway:Idempotency:MaxEntries/MaxBytes): the call was not made. Retry shortly, when older keys have expired.",
            true, null, TimeSpan.FromSeconds(1));

    private Task RejectAsync(HttpContext context, Audit audit, GatewayError error)
    {
        audit.Reason = error.Code;
        audit.Denied = true;
        _metrics.RecordRejection(audit.Caller?.User ?? string.Empty, error.Code);
        return WriteErrorAsync(context, null, error, audit.RequestId);
    }

    private static Task WriteErrorAsync(HttpContext context, ToolCall? call, GatewayError error, string? requestId = null)
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

    /// <summary>What the audit record of one call says; filled in as the call proceeds.</summary>
    private sealed class Audit(long start, string requestId, string method)
    {
        public long Start { get; } = start;

        public string RequestId { get; } = requestId;

        public string Method { get; } = method;

        public string Tool { get; set; } = string.Empty;

        public string Path { get; set; } = "/";

        public CallerKey? Caller { get; set; }

        public string? RunId { get; set; }

        public ToolRoute? Route { get; set; }

        /// <summary>The rule that allowed the call; null while (or because) it is denied.</summary>
        public string? Rule { get; set; }

        public string Reason { get; set; } = "completed";

        /// <summary>The gateway refused the call itself (permission, limit, idempotency conflict, bulkhead, ...).</summary>
        public bool Denied { get; set; }

        public int Attempts { get; set; }

        public string? IdempotencyKey { get; set; }

        public bool Replayed { get; set; }
    }
}
