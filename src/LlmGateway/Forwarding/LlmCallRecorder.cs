using System.Diagnostics;
using LlmGateway.Configuration;
using LlmGateway.Telemetry;
using LlmGateway.Tracing;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Forwarding;

/// <summary>
/// What a finished LLM call leaves behind: its usage settled, metrics, drift signals, the call span's result, the one
/// <c>LlmCall</c> log record and the run ledger's entry. Logs under <see cref="LlmProxyHandler"/>'s category, where
/// operators filter the call records.
/// </summary>
internal sealed class LlmCallRecorder(GatewayMetrics metrics, Runs.IRunLedger runs, ILogger<LlmProxyHandler> logger)
{
    private readonly GatewayMetrics _metrics = metrics;
    private readonly Runs.IRunLedger _runs = runs;
    private readonly ILogger _logger = logger;

    public void Complete(HttpContext context, LlmCall call)
    {
        call.SettleUsage();
        call.TraceId = Activity.Current is { } activity ? activity.TraceId.ToHexString() : null;
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
            _metrics.RecordUpstreamDuration(call.ServedProvider.Name, served.Name, call.Deployment?.Name ?? call.ServedProvider.Name, upstreamSeconds);

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
            if (call.Endpoint == LlmEndpoint.Messages)
            {
                _metrics.RecordMessagesTokens(user, served.Name, usage.UncachedInputTokens, usage.OutputTokens, usage.CachedInputTokens, usage.CacheWriteTokens);
            }
            else
            {
                _metrics.RecordTokens(user, served.Name, usage.InputTokens - usage.CachedInputTokens, usage.OutputTokens, usage.CachedInputTokens);
            }

            _metrics.RecordCost(user, call.Caller.Team ?? "", served.Name, call.CostUsd);
        }

        if (call.UpstreamHeadersTimestamp != 0 && call.Outcome is not (CallOutcome.Cached or CallOutcome.Replayed))
        {
            var generated = call.Outcome == CallOutcome.Completed && call.HasUsage && call.Endpoint is not (LlmEndpoint.Embeddings or LlmEndpoint.CountTokens);
            _metrics.Drift.RecordAnswer(served.Name, call.Answer, generated ? call.Usage.OutputTokens : null, call.Body.Span);
        }

        LlmCallSpans.Complete(call, status);

        // The record's arguments (the outcome's name among them) are only worth building when it is written.
        if (_logger.IsEnabled(LogLevel.Information))
        {
            ForwardingLog.Call(_logger, call.RequestId, call.RunId, call.Caller.Id, user, model, served.Name, call.Deployment?.Name, status, call.Outcome.ToString(),
                call.Usage.InputTokens, call.Usage.CachedInputTokens, call.Usage.CacheWriteTokens, call.Usage.OutputTokens, call.Usage.ReasoningTokens, call.UsageEstimated, call.CostUsd,
                upstreamSeconds * 1000, ttft, totalSeconds * 1000, call.Request.Stream, call.FailureDetail,
                call.Answer.FinishReason, call.Answer.Version, call.Answer.ToolCalls is { } tools ? string.Join(',', tools) : null, call.Step, call.TraceId);
        }

        if (call.RunId is { } runId)
        {
            // The run's calls and totals (Runs/): the same fields as the record above, never the prompt or the answer.
            _runs.Record(runId, user, call.Caller.Team, new Runs.RunCallEntry
            {
                Step = call.Step,
                Kind = Runs.RunConstants.KindLlm,
                RequestId = call.RequestId,
                Time = DateTimeOffset.UtcNow,
                User = user,
                KeyId = call.Caller.Id,
                Model = model,
                ServedModel = served.Name,
                Status = status,
                Outcome = call.Outcome.ToString(),
                InputTokens = call.Usage.InputTokens,
                CachedInputTokens = call.Usage.CachedInputTokens,
                OutputTokens = call.Usage.OutputTokens,
                CostUsd = call.CostUsd,
                DurationMs = Math.Round(totalSeconds * 1000, 3),
                Attempts = call.Attempts,
                FinishReason = call.Answer.FinishReason,
                ServedVersion = call.Answer.Version,
                ToolCalls = call.Answer.ToolCalls is { } asked ? [.. asked] : null,
                TraceId = call.TraceId,
            });
        }
    }
}
