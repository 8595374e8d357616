using Microsoft.Extensions.Logging;

namespace LlmGateway.Tools;

/// <summary>
/// The audit trail: one record per tool call on the logger category <c>LlmGateway.Audit</c> (route it to its own sink
/// with a logging filter or provider). Fields only, never a key, a credential or a query string.
/// </summary>
internal static partial class ToolAuditLog
{
    [LoggerMessage(EventId = GatewayEventIds.ToolCallAudit, EventName = "ToolCall", Level = LogLevel.Information,
        Message = "Tool call {RequestId} at {Time}: key {KeyId} user {User} run {RunId} {Method} {Tool} {Path}: {Decision} by {Rule} ({Reason}), status {Status} in {DurationMs} ms, attempts {Attempts}, idempotency key {IdempotencyKey}, replayed {Replayed}, approval {ApprovalId}, step {Step}, trace {TraceId}")]
    public static partial void ToolCall(ILogger logger, string requestId, string time, string? keyId, string? user, string? runId, string tool, string method, string path,
        string decision, string? rule, string reason, int status, double durationMs, int attempts, string? idempotencyKey, bool replayed, string? approvalId, long? step, string? traceId);
}

/// <summary>Operational log events of the tool gateway.</summary>
internal static partial class ToolLog
{
    [LoggerMessage(EventId = GatewayEventIds.ToolUpstreamFailed, EventName = "ToolUpstreamFailed", Level = LogLevel.Warning,
        Message = "Tool call {RequestId}: tool {Tool} failed after {Attempts} attempt(s): {Failure}")]
    public static partial void UpstreamFailed(ILogger logger, string requestId, string tool, int attempts, string failure);

    [LoggerMessage(EventId = GatewayEventIds.IdempotencyStoreUnavailable, EventName = "IdempotencyStoreUnavailable", Level = LogLevel.Warning,
        Message = "Tool call {RequestId}: idempotency store unavailable, policy {Policy}: {Reason}")]
    public static partial void IdempotencyStoreUnavailable(ILogger logger, string requestId, string policy, string reason);

    [LoggerMessage(EventId = GatewayEventIds.IdempotencyStoreFull, EventName = "IdempotencyStoreFull", Level = LogLevel.Warning,
        Message = "Tool call {RequestId}: refused, the idempotency store is full: {Reason}")]
    public static partial void IdempotencyStoreFull(ILogger logger, string requestId, string reason);
}
