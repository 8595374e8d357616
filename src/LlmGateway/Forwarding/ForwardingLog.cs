using Microsoft.Extensions.Logging;

namespace LlmGateway.Forwarding;

internal static partial class ForwardingLog
{
    /// <summary>The one structured record every LLM call writes. Never carries keys or bodies.</summary>
    [LoggerMessage(EventId = GatewayEventIds.LlmCall, EventName = "LlmCall", Level = LogLevel.Information,
        Message = "LLM call {RequestId} run={RunId} key={KeyId} user={User} model={Model} served={ServedModel} deployment={Deployment} status={Status} outcome={Outcome} input_tokens={InputTokens} cached_input_tokens={CachedInputTokens} cache_write_tokens={CacheWriteTokens} output_tokens={OutputTokens} reasoning_tokens={ReasoningTokens} usage_estimated={UsageEstimated} cost_usd={CostUsd} upstream_ms={UpstreamMs} ttft_ms={TimeToFirstTokenMs} total_ms={TotalMs} stream={Stream} detail={Detail} finish_reason={FinishReason} served_version={ServedVersion} tool_calls={ToolCalls} step={Step} trace_id={TraceId}")]
    public static partial void Call(ILogger logger, string requestId, string? runId, string keyId, string user, string model, string servedModel, string? deployment, int status, string outcome,
        long inputTokens, long cachedInputTokens, long cacheWriteTokens, long outputTokens, long reasoningTokens, bool usageEstimated, decimal costUsd, double upstreamMs, double? timeToFirstTokenMs, double totalMs, bool stream, string? detail,
        string? finishReason, string? servedVersion, string? toolCalls, long? step, string? traceId);

    [LoggerMessage(EventId = GatewayEventIds.UpstreamFailed, EventName = "UpstreamFailed", Level = LogLevel.Warning, Message = "Request {RequestId}: provider {Provider} answered {Status}")]
    public static partial void UpstreamFailed(ILogger logger, string requestId, string provider, int status);

    [LoggerMessage(EventId = GatewayEventIds.UpstreamStreamBroken, EventName = "UpstreamStreamBroken", Level = LogLevel.Warning, Message = "Request {RequestId}: stream from provider {Provider} ended badly: {Reason}")]
    public static partial void StreamBroken(ILogger logger, string requestId, string provider, string reason);

    [LoggerMessage(EventId = GatewayEventIds.UpstreamGarbage, EventName = "UpstreamGarbage", Level = LogLevel.Warning, Message = "Request {RequestId}: provider {Provider}: {Reason}")]
    public static partial void UpstreamGarbage(ILogger logger, string requestId, string provider, string reason);

    [LoggerMessage(EventId = GatewayEventIds.ClientDisconnected, EventName = "ClientDisconnected", Level = LogLevel.Information, Message = "Request {RequestId}: the caller went away mid-response")]
    public static partial void ClientDisconnected(ILogger logger, string requestId);
}
