using Microsoft.Extensions.Logging;

namespace LlmGateway.Runs;

/// <summary>Log events of run outcomes and the run ledger.</summary>
internal static partial class RunLog
{
    [LoggerMessage(EventId = GatewayEventIds.RunRecordFailed, EventName = "RunRecordFailed", Level = LogLevel.Warning,
        Message = "Call {RequestId} of run {RunId} was not added to the run's calls and totals: {Reason}")]
    public static partial void RecordFailed(ILogger logger, string requestId, string runId, string reason);

    [LoggerMessage(EventId = GatewayEventIds.RunEnded, EventName = "RunEnded", Level = LogLevel.Information,
        Message = "Run {RunId} of user {User} ended {Outcome}: {LlmCalls} LLM and {ToolCalls} tool calls, cost_usd={CostUsd}, duration_s={DurationSeconds}, reason={Reason}")]
    public static partial void Ended(ILogger logger, string runId, string user, string outcome, long llmCalls, long toolCalls, decimal costUsd, double durationSeconds, string? reason);

    [LoggerMessage(EventId = GatewayEventIds.RunSweepFailed, EventName = "RunSweepFailed", Level = LogLevel.Warning,
        Message = "Idle runs could not be ended now (next try in {PeriodSeconds} s): {Reason}")]
    public static partial void SweepFailed(ILogger logger, double periodSeconds, string reason);

    [LoggerMessage(EventId = GatewayEventIds.RunRecordsDropped, EventName = "RunRecordsDropped", Level = LogLevel.Warning,
        Message = "{Count} calls were not added to their runs' calls and totals: the run ledger's queue ({Capacity} calls) was full, Redis is not keeping up")]
    public static partial void RecordsDropped(ILogger logger, long count, int capacity);
}
