using Microsoft.Extensions.Logging;

namespace LlmGateway.Caching;

/// <summary>The response cache's and the recordings' log events.</summary>
internal static partial class CacheLog
{
    [LoggerMessage(EventId = GatewayEventIds.CacheStoreFailed, EventName = "CacheStoreFailed", Level = LogLevel.Warning, Message = "Cache {Subject}: the store failed to {Operation}; treated as a miss: {Reason}")]
    public static partial void StoreFailed(ILogger logger, string subject, string operation, string reason);

    [LoggerMessage(EventId = GatewayEventIds.CacheEntryCorrupt, EventName = "CacheEntryCorrupt", Level = LogLevel.Warning, Message = "Cache entry {Key} ({Bytes} bytes) is truncated or corrupted; treated as a miss and removed")]
    public static partial void EntryCorrupt(ILogger logger, string key, int bytes);

    [LoggerMessage(EventId = GatewayEventIds.RecordingFailed, EventName = "RecordingFailed", Level = LogLevel.Warning, Message = "Request {RequestId}: the answer could not be recorded for run {RunId}: {Reason}")]
    public static partial void RecordingFailed(ILogger logger, string requestId, string runId, string reason);

    [LoggerMessage(EventId = GatewayEventIds.ReplayMiss, EventName = "ReplayMiss", Level = LogLevel.Information, Message = "Request {RequestId}: replay of run {RecordedRunId} missed at step {Step}: {Reason}")]
    public static partial void ReplayMiss(ILogger logger, string requestId, string recordedRunId, int step, string reason);
}
