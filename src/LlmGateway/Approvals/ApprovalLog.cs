using Microsoft.Extensions.Logging;

namespace LlmGateway.Approvals;

/// <summary>Operational log events of approvals (decisions themselves go to the audit trail).</summary>
internal static partial class ApprovalLog
{
    [LoggerMessage(EventId = GatewayEventIds.ApprovalOpened, EventName = "ApprovalOpened", Level = LogLevel.Information,
        Message = "Tool call {RequestId} held for approval {ApprovalId}: {Method} {Tool} {Path} of user {User} run {RunId}")]
    public static partial void Opened(ILogger logger, string requestId, string approvalId, string method, string tool, string path, string user, string? runId);

    [LoggerMessage(EventId = GatewayEventIds.ApprovalStoreUnavailable, EventName = "ApprovalStoreUnavailable", Level = LogLevel.Warning,
        Message = "Approval store unavailable ({Operation}): {Reason}")]
    public static partial void StoreUnavailable(ILogger logger, string operation, string reason);

    [LoggerMessage(EventId = GatewayEventIds.ApprovalWebhookFailed, EventName = "ApprovalWebhookFailed", Level = LogLevel.Warning,
        Message = "Approval webhook notice for {ApprovalId} not delivered after {Attempts} attempt(s): {Reason}")]
    public static partial void WebhookFailed(ILogger logger, string approvalId, int attempts, string reason);

    [LoggerMessage(EventId = GatewayEventIds.ApprovalWebhookDropped, EventName = "ApprovalWebhookDropped", Level = LogLevel.Warning,
        Message = "Approval webhook notice for {ApprovalId} dropped: {Queued} notices are already waiting")]
    public static partial void WebhookDropped(ILogger logger, string approvalId, int queued);

    [LoggerMessage(EventId = GatewayEventIds.ApprovalSubscriptionFailed, EventName = "ApprovalSubscriptionFailed", Level = LogLevel.Warning,
        Message = "Approval notifications from Redis unavailable ({Reason}); held calls read their approval every 0.5 s instead")]
    public static partial void SubscriptionFailed(ILogger logger, string reason);
}
