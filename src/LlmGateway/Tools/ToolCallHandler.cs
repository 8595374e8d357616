using System.Diagnostics;
using System.Globalization;
using LlmGateway.Approvals;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Identity;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.Tools;

/// <summary>
/// The request path of <c>/tools/{tool}/{**path}</c>: authenticate, find the tool, check the key's rules (reading
/// the body only when a rule constrains it or the call is keyed, retried or held), count the call against the run
/// (<see cref="ToolCallAdmission"/>), hold it for approval when its rule says so (<see cref="ApprovalGate"/>), then
/// execute it (<see cref="IdempotentToolExecution"/>, which forwards through <see cref="ToolForwarder"/>).
/// Every call ends with one audit record.
/// </summary>
internal sealed class ToolCallHandler
{
    private readonly GatewayConfigProvider _config;
    private readonly ToolRegistry _tools;
    private readonly ToolCallAdmission _admission;
    private readonly IdempotentToolExecution _execution;
    private readonly ApprovalGate _approvals;
    private readonly ToolRunCache _runCache;
    private readonly ToolRunCacheMetrics _runCacheMetrics;
    private readonly IRunCacheGenerations _generations;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger _audit;
    private readonly Runs.IRunLedger _runs;

    public ToolCallHandler(GatewayConfigProvider config, ToolRegistry tools, ToolCallAdmission admission, IdempotentToolExecution execution, ApprovalGate approvals, ToolRunCache runCache, ToolRunCacheMetrics runCacheMetrics, IRunCacheGenerations generations, GatewayMetrics metrics, ILoggerFactory loggerFactory, Runs.IRunLedger runs)
    {
        _runs = runs;
        _generations = generations;
        _runCache = runCache;
        _runCacheMetrics = runCacheMetrics;
        _approvals = approvals;
        _config = config;
        _tools = tools;
        _admission = admission;
        _execution = execution;
        _metrics = metrics;
        _audit = loggerFactory.CreateLogger(ToolConstants.AuditCategory);
    }

    public async Task HandleAsync(HttpContext context)
    {
        var audit = new ToolCallAudit(Stopwatch.GetTimestamp(), RequestIds.For(context), context.Request.Method);
        var rawPath = context.Request.Path.Value ?? "/";
        var slash = rawPath.IndexOf('/', ToolConstants.RoutePrefix.Length);
        audit.Tool = context.Request.RouteValues["tool"] as string ?? string.Empty;
        audit.Path = slash < 0 ? "/" : rawPath[slash..];
        using var span = Tracing.ToolCallSpans.Start(context.Request, audit.Tool);
        try
        {
            await HandleCoreAsync(context, audit).ConfigureAwait(false);
        }
        finally
        {
            var status = context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted ? 499 : context.Response.StatusCode;
            var seconds = Stopwatch.GetElapsedTime(audit.Start).TotalSeconds;
            audit.TraceId = Activity.Current is { } activity ? activity.TraceId.ToHexString() : null;
            Tracing.ToolCallSpans.Complete(span, audit, status);
            if (audit.Route is not null)
            {
                _metrics.RecordToolCall(audit.Route.Name, ToolConstants.MethodLabel(audit.Method), status, seconds);
            }

            ToolAuditLog.ToolCall(_audit, audit.RequestId, DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture), audit.Caller?.Id, audit.Caller?.User, audit.RunId,
                audit.Tool, audit.Method, audit.Path, audit.Denied ? "denied" : "allowed", audit.Rule, audit.Reason, status, Math.Round(seconds * 1000, 3),
                audit.Attempts, audit.IdempotencyKey, audit.Replayed, audit.ApprovalId, audit.Step, audit.TraceId);
            if (audit.RunId is { } runId && audit.Caller is { } caller && !audit.Denied)
            {
                _runs.Record(runId, caller.User, caller.Team, new Runs.RunCallEntry
                {
                    Step = audit.Step,
                    Kind = Runs.RunConstants.KindTool,
                    RequestId = audit.RequestId,
                    Time = DateTimeOffset.UtcNow,
                    User = caller.User,
                    KeyId = caller.Id,
                    Tool = audit.Tool,
                    Method = audit.Method,
                    Path = audit.Path,
                    Status = status,
                    Outcome = audit.Reason,
                    DurationMs = Math.Round(seconds * 1000, 3),
                    Attempts = audit.Attempts,
                    TraceId = audit.TraceId,
                });
            }
        }
    }

    private async Task HandleCoreAsync(HttpContext context, ToolCallAudit audit)
    {
        var config = _config.Current;
        var request = context.Request;
        string? runId = null;
        var error = CallerAuthenticator.Authenticate(request, config, out var caller) ?? CallerAuthenticator.ReadRunId(request, out runId);
        audit.Caller = caller;
        audit.RunId = runId;
        if (error is { } authError)
        {
            await RejectAsync(context, audit, authError).ConfigureAwait(false);
            return;
        }

        var snapshot = _tools.Current;
        if (!snapshot.Tools.TryGetValue(audit.Tool, out var route))
        {
            await RejectAsync(context, audit, new GatewayError(StatusCodes.Status404NotFound, ToolConstants.ToolNotFound, "invalid_request_error",
                $"The tool '{audit.Tool}' does not exist on this gateway (Gateway:Tools).", false)).ConfigureAwait(false);
            return;
        }

        audit.Route = route;
        if (!ToolRequestReader.IsPlainPath(audit.Path))
        {
            await RejectAsync(context, audit, GatewayError.InvalidRequest(
                "Tool paths may not contain an encoded slash or backslash (%2F, %5C, \\) or . and .. segments: rules could not tell where they lead.")).ConfigureAwait(false);
            return;
        }

        var method = audit.Method;
        var path = ToolRule.SplitPath(audit.Path);
        var permissions = snapshot.PermissionsFor(caller, route.Name);
        var rule = permissions?.FindUnconditional(method, path);
        var needsBody = rule is null && permissions is not null && permissions.NeedsBody(method, path);
        if (rule is null && !needsBody)
        {
            await RejectAsync(context, audit, ToolCallResponses.Denied(route.Name, method, audit.Path, permissions is null ? "your key has no rules for this tool" : "no rule of your key allows it")).ConfigureAwait(false);
            return;
        }

        var idempotencyError = ToolRequestReader.ReadIdempotencyKey(request, runId, out var idempotencyKey);
        audit.IdempotencyKey = idempotencyKey;
        if (idempotencyError is { } keyError)
        {
            await RejectAsync(context, audit, keyError).ConfigureAwait(false);
            return;
        }

        // The body is read whole only when something needs it: a body rule, the request hash of a keyed call, or a retry.
        ReadOnlyMemory<byte>? body = null;
        if (ToolRequestReader.HasBody(request) && (needsBody || idempotencyKey is not null || route.Options.MaxAttempts > 1 || rule is { RequiresApproval: true }))
        {
            var (bytes, readError) = await ToolRequestReader.ReadBodyAsync(request, config.Options.Limits.MaxRequestBodyBytes, context.RequestAborted).ConfigureAwait(false);
            if (readError is { } tooLarge)
            {
                await RejectAsync(context, audit, tooLarge).ConfigureAwait(false);
                return;
            }

            body = bytes;
        }

        if (needsBody)
        {
            rule = permissions!.FindForBody(method, path, body ?? ReadOnlyMemory<byte>.Empty);
            if (rule is null)
            {
                await RejectAsync(context, audit, ToolCallResponses.Denied(route.Name, method, audit.Path, "its JSON body does not satisfy the rule's body constraints")).ConfigureAwait(false);
                return;
            }
        }

        audit.Rule = rule!.Description;
        var (reservation, refusal) = await _admission.AdmitAsync(config, caller, runId, audit.RequestId, context.RequestAborted).ConfigureAwait(false);
        if (refusal is { } refused)
        {
            await RejectAsync(context, audit, refused).ConfigureAwait(false);
            return;
        }

        if (reservation is { Step: > 0 })
        {
            audit.Step = reservation.Step;
        }

        var countsAsCall = true;
        var runCache = runId is null ? null : route.Options.RunCache;
        var cachedRead = runCache is not null && ToolRunCache.IsCached(runCache, method);
        var pathAndQuery = audit.Path + request.QueryString.Value;
        try
        {
            long? generation = null;
            if (cachedRead)
            {
                generation = await _generations.CurrentAsync(runId!, route.Name, context.RequestAborted).ConfigureAwait(false);
                if (generation is { } current && _runCache.TryGet(runId!, route.Name, caller.User, method, pathAndQuery, current, out var cached))
                {
                    // Answered within the run: no call to the tool, no side effect; counted against the run's calls unless CountHits is false.
                    countsAsCall = runCache!.CountHits;
                    audit.Reason = "run_cache_hit";
                    _runCacheMetrics.Record(route.Name, ToolRunCacheMetrics.Hit);
                    await ToolCallResponses.WriteStoredAsync(context, audit.RequestId, cached!, ToolConstants.CacheHeader, "HIT").ConfigureAwait(false);
                    return;
                }

                _runCacheMetrics.Record(route.Name, ToolRunCacheMetrics.Miss);
            }
            else if (runCache is not null && !await InvalidateAsync(runId!, route.Name, context.RequestAborted).ConfigureAwait(false))
            {
                // A write whose invalidation cannot be recorded could be followed by a stale read on another replica.
                countsAsCall = false;
                await RejectAsync(context, audit, ToolCallResponses.StoreUnavailable()).ConfigureAwait(false);
                return;
            }

            string? approvalId = null;
            if (rule.RequiresApproval)
            {
                var held = new ApprovalGate.HeldCall(audit.RequestId, caller, runId, route.Name, method, audit.Path, request.QueryString.Value ?? string.Empty,
                    rule.Approvers, rule.ApprovalTtl, body);
                (approvalId, var holdError) = await _approvals.HoldAsync(config.Options.Approvals, held, context.RequestAborted).ConfigureAwait(false);
                audit.ApprovalId = approvalId;
                if (holdError is { } notApproved)
                {
                    // A call still waiting for its approval is not a call yet: its repeats do not use up the run's calls.
                    countsAsCall = notApproved.Code != GatewayErrorCodes.ApprovalPending;
                    await RejectAsync(context, audit, notApproved).ConfigureAwait(false);
                    return;
                }
            }

            var call = new ToolCall(audit.RequestId, caller, runId, route, method, audit.Path,
                RequestUtilities.MakeDestinationAddress(route.BaseUrl, new PathString(audit.Path), request.QueryString))
            {
                // An approved call executes once per approval: the approval keys it in the idempotency store.
                IdempotencyKey = idempotencyKey ?? (approvalId is null ? null : "approval:" + approvalId),
                IdempotencyScope = approvalId is null ? null : "approval:" + approvalId,
                RetrySafe = idempotencyKey is not null || approvalId is not null || ToolConstants.IsIdempotentMethod(method),
            };
            if (cachedRead)
            {
                call.BufferResponse = true;
                call.MaxStoredBytes = runCache!.MaxEntryBytes;
                call.CacheHeader = "MISS";
            }

            await _execution.ExecuteAsync(context, call, body, config, audit).ConfigureAwait(false);
            if (cachedRead && generation is { } storedUnder && call.Stored is { Status: >= 200 and < 300, Body: not null } answer)
            {
                _runCache.Store(runId!, route.Name, caller.User, method, pathAndQuery, storedUnder, answer, runCache!);
            }
            else if (runCache is not null && !cachedRead)
            {
                // Again after the write: a read of the run that ran alongside it may have stored what the write changed.
                await InvalidateAsync(runId!, route.Name, CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            if (reservation is not null)
            {
                await _admission.FinishAsync(reservation, countsAsCall, audit.RequestId).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Forgets what the run read from the tool, here and (with Redis) on every replica; false when that could not be recorded.</summary>
    private async ValueTask<bool> InvalidateAsync(string runId, string tool, CancellationToken cancellationToken)
    {
        _runCache.Clear(runId, tool);
        try
        {
            await _generations.AdvanceAsync(runId, tool, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (RunCacheUnavailableException)
        {
            return false;
        }
    }

    private Task RejectAsync(HttpContext context, ToolCallAudit audit, GatewayError error) => ToolCallResponses.RejectAsync(context, audit, error, _metrics);
}
