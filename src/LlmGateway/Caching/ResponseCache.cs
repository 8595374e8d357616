using System.Diagnostics;
using System.Globalization;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Identity;
using LlmGateway.Replay;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Caching;

/// <summary>
/// The response cache and run record/replay in the request path. <see cref="BeginAsync"/> runs before admission:
/// it reads the cache and replay headers, looks the request up (joining an identical miss already in flight), and
/// returns the call's <see cref="CachedCall"/>. That answers a hit or a replayed step without any upstream call
/// (<see cref="CachedCall.TryServeAsync"/>), or hands the relay a <see cref="ResponseCapture"/> so a complete 200
/// answer is stored and recorded when the call ends (<see cref="CachedCall.DisposeAsync"/>).
/// </summary>
/// <remarks>Store trouble never fails a call: a cache store that cannot answer is a miss, and one that cannot store is logged.</remarks>
internal sealed class ResponseCache
{
    private readonly ResponseCacheStore _store;
    private readonly IRecordingStore _recordings;
    private readonly GatewayMetrics _metrics;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<ResponseCache> _logger;
    private readonly SingleFlight _flights = new();

    public ResponseCache(ResponseCacheStore store, IRecordingStore recordings, GatewayMetrics metrics, TimeProvider timeProvider, ILogger<ResponseCache> logger)
    {
        _store = store;
        _recordings = recordings;
        _metrics = metrics;
        _timeProvider = timeProvider;
        _logger = logger;
    }

    /// <summary>Decides how the cache and replay take part in this call; the result may carry an error to answer instead.</summary>
    public async ValueTask<CachedCall> BeginAsync(HttpContext context, GatewayConfig config, LlmCall call, ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        var headers = context.Request.Headers;
        var options = config.Options.Cache;
        var replayOf = headers[CacheHeaders.ReplayOf].ToString();
        var record = headers[CacheHeaders.Record].ToString();
        if (!options.Enabled && replayOf.Length == 0 && record.Length == 0)
        {
            return CachedCall.None;
        }

        var state = new CachedCall(this, context, call, options);
        var recording = record.Length > 0 && !string.Equals(record, "false", StringComparison.OrdinalIgnoreCase);

        // The canonical form costs a parse and a sorted re-write of the body: only for answers that may be
        // cached, recorded or replayed. Everything else is a BYPASS decided from the one-pass request read.
        if (replayOf.Length == 0 && !recording && !MayCache(call, headers))
        {
            if (options.Enabled)
            {
                await BeginCacheAsync(state, null, headers, options, cancellationToken);
            }

            return state;
        }

        var canonical = CanonicalRequest.Create(body);
        if (replayOf.Length > 0)
        {
            await BeginReplayAsync(state, canonical, replayOf, options, cancellationToken);
            return state;
        }

        if (recording)
        {
            if (!string.Equals(record, "true", StringComparison.OrdinalIgnoreCase) || call.RunId is null)
            {
                state.Error = GatewayError.InvalidRequest($"{CacheHeaders.Record} must be 'true' and come with {GatewayHeaders.RunId}: the run whose answers are recorded.");
                return state;
            }

            // Recordings take the gateway's memory (or Redis's): only keys the operator trusts with that may record.
            if (!call.Caller.Options.AllowRecord)
            {
                state.Error = GatewayError.PermissionDenied($"Your key may not record runs ({CacheHeaders.Record}): an operator allows it with \"AllowRecord\": true on the key in Gateway:Keys.");
                return state;
            }

            state.RecordRunId = call.RunId;
            state.RequestHash = canonical.Hash(call.Endpoint, call.ServedModel, "replay");
            state.RequestBody = body.ToArray();
        }

        if (options.Enabled)
        {
            await BeginCacheAsync(state, canonical, headers, options, cancellationToken);
        }

        if (state.Error is null && state.Answer is null && (state.Key is not null && state.Store || state.RecordRunId is not null))
        {
            state.Capture = new ResponseCapture(call.Endpoint, state.RecordRunId is null ? options.MaxEntryBytes : Math.Max(options.MaxEntryBytes, call.Limits.MaxResponseBodyBytes));
        }

        return state;
    }

    private static bool MayCache(LlmCall call, IHeaderDictionary headers) =>
        call.Endpoint == LlmEndpoint.Embeddings || call.Request.Deterministic || headers[CacheHeaders.Cache].ToString() == CacheHeaders.Force;

    private async ValueTask BeginCacheAsync(CachedCall state, CanonicalRequest? canonical, IHeaderDictionary headers, CacheOptions options, CancellationToken cancellationToken)
    {
        var call = state.Call;
        var mode = headers[CacheHeaders.Cache].ToString();
        if (mode.Length > 0 && mode is not (CacheHeaders.NoCache or CacheHeaders.NoStore or CacheHeaders.Force))
        {
            state.Error = GatewayError.InvalidRequest($"{CacheHeaders.Cache} must be one of no-cache, no-store, force (was '{mode}').");
            return;
        }

        state.Ttl = options.Ttl;
        var ttl = headers[CacheHeaders.Ttl].ToString();
        if (ttl.Length > 0)
        {
            if (!int.TryParse(ttl, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds <= 0)
            {
                state.Error = GatewayError.InvalidRequest($"{CacheHeaders.Ttl} must be a positive number of seconds (was '{ttl}').");
                return;
            }

            // A caller may shorten the configured TTL, never lengthen it.
            state.Ttl = TimeSpan.FromSeconds(Math.Min(seconds, options.Ttl.TotalSeconds));
        }

        var model = call.ServedModel.Name;
        if (canonical is null || !(call.Endpoint == LlmEndpoint.Embeddings || mode == CacheHeaders.Force || call.Request.Deterministic))
        {
            Result(state, CacheHeaders.Bypass);
            return;
        }

        var key = canonical.Hash(call.Endpoint, call.ServedModel, ScopeOf(options, call.Caller));
        state.Key = key;
        state.KeyModel = call.ServedModel.Name;
        state.Store = mode != CacheHeaders.NoStore;
        if (mode == CacheHeaders.NoCache)
        {
            Result(state, CacheHeaders.Bypass);
            return;
        }

        var stream = call.Request.Stream;
        CachedAnswer? hit;
        if (!state.Store)
        {
            hit = await LookupAsync(key, stream, cancellationToken);
        }
        else if (_flights.TryLead(key, out var flight))
        {
            try
            {
                hit = await LookupAsync(key, stream, cancellationToken);
            }
            catch
            {
                // The caller went away (the only way a lookup throws): end the flight, or it stays for good and every
                // later identical call waits SingleFlightWait for it, then misses.
                _flights.Complete(key, flight, null);
                throw;
            }

            if (hit is null)
            {
                state.Flight = flight;
            }
            else
            {
                _flights.Complete(key, flight, hit);
            }
        }
        else
        {
            // An identical miss is in flight: its answer, when it comes in time, is this call's answer too, but only
            // when it came from the model this call asked for. A leader that fell back or was downgraded answered for
            // another model: this call goes upstream itself, where its own admission (and X-Gateway-No-Downgrade) decides.
            hit = null;
            try
            {
                var shared = await flight.Task.WaitAsync(options.SingleFlightWait, cancellationToken);
                hit = shared is not null && shared.CanServe(stream) && IsFor(shared, state) ? shared : null;
            }
            catch (TimeoutException)
            {
            }
        }

        if (hit is null)
        {
            Result(state, CacheHeaders.Miss);
            return;
        }

        state.Answer = hit;
        Result(state, CacheHeaders.Hit);
        _metrics.RecordCacheSaved(model, hit.CostUsd);
    }

    private async ValueTask BeginReplayAsync(CachedCall state, CanonicalRequest canonical, string replayOf, CacheOptions options, CancellationToken cancellationToken)
    {
        var call = state.Call;
        if (!CallerAuthenticator.IsValidId(replayOf) || call.RunId is null)
        {
            state.Error = GatewayError.InvalidRequest($"{CacheHeaders.ReplayOf} must name a recorded run (1 to 128 characters: letters, digits and . _ : -) and come with {GatewayHeaders.RunId}, the replaying run's own id.");
            return;
        }

        var hash = canonical.Hash(call.Endpoint, call.ServedModel, "replay");
        int step;
        (string User, string RequestHash, CachedAnswer Answer)? recorded;
        try
        {
            step = await _recordings.NextReplayStepAsync(replayOf, call.RunId, options.RecordingTtl, cancellationToken);
            var stored = await _recordings.GetStepAsync(replayOf, step, cancellationToken);
            recorded = stored is null ? null : RecordedStep.Deserialize(stored);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            CacheLog.StoreFailed(_logger, call.RequestId, "replay", ex.Message);
            state.Error = GatewayError.StoreUnavailable("The recording store did not answer in time; retry shortly.");
            return;
        }

        string? why = recorded switch
        {
            null when step == 1 => $"no recording of run '{replayOf}' is kept (never recorded, deleted, or expired)",
            null => $"the recording of run '{replayOf}' has only {step - 1} steps",
            { } r when r.User != call.Caller.User => $"the recording of run '{replayOf}' belongs to another user",
            { } r when r.RequestHash != hash => $"step {step} of the recording of run '{replayOf}' answered a different request (endpoint, model or parameters differ)",
            { } r when !r.Answer.CanServe(call.Request.Stream) => $"step {step} of the recording of run '{replayOf}' cannot be replayed as a {(call.Request.Stream ? "stream" : "JSON answer")}",
            _ => null,
        };
        if (why is not null)
        {
            CacheLog.ReplayMiss(_logger, call.RequestId, replayOf, step, why);
            state.Error = new GatewayError(StatusCodes.Status409Conflict, GatewayErrorCodes.ReplayMiss, "invalid_request_error",
                $"Replay of run '{replayOf}' missed at step {step}: {why}.", false);
            return;
        }

        state.Answer = recorded!.Value.Answer;
        state.ReplayStep = step;
    }

    /// <summary>Answers a hit or replayed step; false when the call must go upstream (then the relay feeds the capture).</summary>
    internal async ValueTask<bool> ServeAsync(CachedCall state)
    {
        var context = state.Context;
        var call = state.Call;
        var response = context.Response;
        if (state.Answer is not { } answer)
        {
            if (state.Result is { } result)
            {
                response.Headers[CacheHeaders.Cache] = result;
            }

            call.Capture = state.Capture;
            return false;
        }

        call.Outcome = state.ReplayStep > 0 ? CallOutcome.Replayed : CallOutcome.Cached;
        call.Usage = state.IsFree ? default : answer.Usage;
        call.HasUsage = true;
        call.SettleUsage();

        var headers = response.Headers;
        response.StatusCode = StatusCodes.Status200OK;
        headers[GatewayHeaders.RequestId] = call.RequestId;
        headers[GatewayHeaders.Model] = answer.Model;
        headers[GatewayHeaders.Attempts] = "0";
        headers[GatewayHeaders.CostUsd] = call.CostUsd.ToString("0.##########", CultureInfo.InvariantCulture);
        Budgets.RateLimitHeaders.Write(headers, call.Admission, call.Endpoint is LlmEndpoint.Messages or LlmEndpoint.CountTokens);
        if (state.Result is { } cacheResult)
        {
            headers[CacheHeaders.Cache] = cacheResult;
        }

        if (state.ReplayStep > 0)
        {
            headers[CacheHeaders.ReplayStep] = state.ReplayStep.ToString(CultureInfo.InvariantCulture);
        }

        byte[] bytes;
        if (call.Request.Stream)
        {
            response.ContentType = "text/event-stream";
            headers.CacheControl = "no-cache";
            bytes = CachedAnswerRenderer.RenderStream(answer, call.Request.IncludeUsage == true);
        }
        else
        {
            response.ContentType = "application/json";
            bytes = answer.Body;
            response.ContentLength = bytes.Length;
        }

        try
        {
            await response.Body.WriteAsync(bytes, context.RequestAborted);
            call.FirstChunkTimestamp = Stopwatch.GetTimestamp();
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
            call.Outcome = CallOutcome.ClientAborted;
        }

        return true;
    }

    /// <summary>Stores and records a complete answer, and hands it to the identical calls waiting for it.</summary>
    internal async ValueTask CompleteAsync(CachedCall state)
    {
        var call = state.Call;
        CachedAnswer? answer = null;
        try
        {
            if (state.Capture is { } capture && call.Outcome == CallOutcome.Completed && call.PendingError is null
                && state.Context.Response.StatusCode == StatusCodes.Status200OK && capture.Build() is { } built)
            {
                var now = _timeProvider.GetUtcNow();
                answer = new CachedAnswer(call.Endpoint, call.ServedModel.Name, built.Kind, built.Body, call.Usage, call.CostUsd, now, now + state.Ttl);
                // An answer from another model (a fallback or downgrade) is not the answer to this key.
                if (state.Store && state.Key is { } key && built.Body.Length <= state.Options.MaxEntryBytes && IsFor(answer, state))
                {
                    await _store.SetAsync(key, answer);
                }
            }

            var recorded = answer ?? (state.ReplayStep == 0 ? state.Answer : null);
            if (state.RecordRunId is { } run && recorded is not null && call.Outcome != CallOutcome.ClientAborted)
            {
                try
                {
                    var step = RecordedStep.Serialize(call.Caller.User, state.RequestHash!, state.RequestBody!, call.Request.Stream, recorded);
                    if (await _recordings.AppendAsync(run, step, state.Options.RecordingTtl, CancellationToken.None) == 0)
                    {
                        CacheLog.RecordingFailed(_logger, call.RequestId, run,
                            $"the recording is full (Gateway:Cache:RecordingMaxRunBytes {state.Options.RecordingMaxRunBytes} bytes, or in memory RecordingMaxBytes); this and later steps of the run are not recorded");
                    }
                }
                catch (Exception ex)
                {
                    CacheLog.RecordingFailed(_logger, call.RequestId, run, ex.Message);
                }
            }
        }
        finally
        {
            if (state.Flight is { } flight)
            {
                _flights.Complete(state.Key!, flight, answer is not null && IsFor(answer, state) ? answer : null);
            }
        }
    }

    /// <summary>
    /// Whether an answer may serve the call under its cache key: only one served by the model the key was computed for
    /// (the requested model; a hit is never downgraded), never a fallback's or a downgrade's.
    /// </summary>
    private static bool IsFor(CachedAnswer answer, CachedCall state) =>
        string.Equals(answer.Model, state.KeyModel, StringComparison.Ordinal) && answer.Endpoint == state.Call.Endpoint;

    private static string ScopeOf(CacheOptions options, CallerKey caller)
    {
        CacheScopes.TryParse(options.Scope, out var scope);
        return scope switch
        {
            CacheScope.Global => "global",
            CacheScope.Team when caller.Team is { Length: > 0 } team => "team:" + team,
            _ => "user:" + caller.User,
        };
    }

    private void Result(CachedCall state, string result)
    {
        state.Result = result;
        _metrics.RecordCacheRequest(state.Call.ServedModel.Name, result switch
        {
            CacheHeaders.Hit => TelemetryTagValues.Hit,
            CacheHeaders.Miss => TelemetryTagValues.Miss,
            _ => TelemetryTagValues.Bypass,
        });
    }

    /// <summary>An intact, unexpired entry that can answer in the requested form; anything else is a miss.</summary>
    private async ValueTask<CachedAnswer?> LookupAsync(string key, bool stream, CancellationToken cancellationToken)
    {
        var answer = await _store.GetAsync(key, cancellationToken);
        return answer is not null && answer.CanServe(stream) ? answer : null;
    }
}
