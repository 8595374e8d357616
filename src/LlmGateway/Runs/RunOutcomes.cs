using System.Text.Json;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Identity;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Runs;

/// <summary>
/// Ends runs and observes them once (<see cref="RunMetrics"/>): <c>POST /v1/runs/{run_id}/outcome</c> with the run's
/// caller key, and the idle sweep (<see cref="RunSweeper"/>) for runs nobody reported.
/// </summary>
/// <remarks>
/// Decisions: a run the gateway has no call of (never seen, or idle past its expiry) answers 404 <c>run_not_found</c>
/// and observes nothing; a run of another user answers 403 <c>permission_denied</c>; a second report of an ended run
/// is idempotent: 200 with <c>"recorded": false</c> and the outcome it ended with, and nothing observed again.
/// </remarks>
internal sealed class RunOutcomes(GatewayConfigProvider config, IRunLedger ledger, GatewayMetrics metrics, ILogger<RunOutcomes> logger)
{
    /// <summary>Largest outcome body read; a reason beyond 1,000 characters is cut.</summary>
    private const int MaxBodyBytes = 16 * 1024;
    private const int MaxReasonLength = 1000;

    public async Task HandleAsync(HttpContext context)
    {
        _ = RequestIds.For(context);
        var runId = context.Request.RouteValues["run_id"] as string ?? string.Empty;
        var error = CallerAuthenticator.Authenticate(context.Request, config.Current, out var caller);
        if (error is null && !CallerAuthenticator.IsValidId(runId))
        {
            error = GatewayError.InvalidRequest("The run id must be 1 to 128 characters: letters, digits and . _ : -", "run_id");
        }

        if (error is { } refused)
        {
            await refused.WriteAsync(context.Response).ConfigureAwait(false);
            return;
        }

        context.Response.Headers[GatewayHeaders.RunId] = runId;
        var (outcome, reason, bodyError) = await ReadBodyAsync(context.Request).ConfigureAwait(false);
        if (bodyError is { } invalid)
        {
            await invalid.WriteAsync(context.Response).ConfigureAwait(false);
            return;
        }

        RunEnding ending;
        try
        {
            ending = await ledger.EndAsync(runId, caller.User, outcome!, context.RequestAborted).ConfigureAwait(false);
        }
        catch (RunLedgerUnavailableException ex)
        {
            await GatewayError.StoreUnavailable($"The run store (Redis) did not answer: {ex.Message}. Report the outcome again.").WriteAsync(context.Response).ConfigureAwait(false);
            return;
        }

        switch (ending.Status)
        {
            case RunEndStatus.UnknownRun:
                await new GatewayError(StatusCodes.Status404NotFound, "run_not_found", "invalid_request_error",
                    $"No call of run '{runId}' is known (never seen, or idle past Gateway:Runs:IdleExpiry): an outcome is reported after the run's calls.", false).WriteAsync(context.Response).ConfigureAwait(false);
                return;
            case RunEndStatus.OtherUser:
                await GatewayError.PermissionDenied($"The run '{runId}' belongs to another user: report its outcome with the key that made its calls.").WriteAsync(context.Response).ConfigureAwait(false);
                return;
            case RunEndStatus.Ended:
                Observe(ending.Summary!, reason);
                break;
        }

        await context.Response.WriteAsJsonAsync(new Dictionary<string, object?>
        {
            ["run_id"] = runId,
            ["outcome"] = ending.Outcome,
            ["recorded"] = ending.Status == RunEndStatus.Ended,
        }, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Ends the runs idle past their expiry as <c>unknown</c> and observes each (this replica's share).</summary>
    public async ValueTask<int> SweepAsync(CancellationToken cancellationToken)
    {
        var ended = await ledger.EndIdleAsync(cancellationToken).ConfigureAwait(false);
        foreach (var run in ended)
        {
            Observe(run, null);
        }

        return ended.Count;
    }

    private void Observe(RunSummary run, string? reason)
    {
        metrics.Runs.Observe(run);
        RunLog.Ended(logger, run.RunId, run.User, run.Outcome, run.LlmCalls, run.ToolCalls, run.CostUsd, run.Duration.TotalSeconds, reason);
    }

    private static async ValueTask<(string? Outcome, string? Reason, GatewayError? Error)> ReadBodyAsync(HttpRequest request)
    {
        const string Expected = "The body must be JSON: {\"outcome\": \"success\" | \"failure\" | \"abandoned\", \"reason\": \"...\"} (reason optional).";
        if (request.ContentLength > MaxBodyBytes)
        {
            return (null, null, GatewayError.InvalidRequest($"The outcome body is larger than {MaxBodyBytes} bytes. " + Expected));
        }

        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(new LimitedStream(request.Body, MaxBodyBytes), cancellationToken: request.HttpContext.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is JsonException or InvalidDataException)
        {
            return (null, null, GatewayError.InvalidRequest(Expected));
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("outcome", out var outcome) || outcome.ValueKind != JsonValueKind.String)
            {
                return (null, null, GatewayError.InvalidRequest(Expected, "outcome"));
            }

            var value = outcome.GetString()!;
            if (!RunConstants.IsReportable(value))
            {
                return (null, null, GatewayError.InvalidRequest($"Unknown outcome '{(value.Length > 32 ? value[..32] : value)}'. " + Expected, "outcome"));
            }

            string? reason = null;
            if (root.TryGetProperty("reason", out var given))
            {
                if (given.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                {
                    return (null, null, GatewayError.InvalidRequest("reason must be a string. " + Expected, "reason"));
                }

                reason = given.GetString();
                if (reason is { Length: > MaxReasonLength })
                {
                    reason = reason[..MaxReasonLength];
                }
            }

            return (value, reason, null);
        }
    }

    /// <summary>Reads at most <c>limit</c> bytes, then fails: a body without Content-Length is bounded too.</summary>
    private sealed class LimitedStream(Stream inner, long limit) : Stream
    {
        private long _read;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            _read += n;
            return _read > limit ? throw new InvalidDataException("The body is too large.") : n;
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
