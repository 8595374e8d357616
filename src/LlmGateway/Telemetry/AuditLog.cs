using Microsoft.Extensions.Logging;

namespace LlmGateway.Telemetry;

/// <summary>
/// The audit trail: rejections, admin actions and tool calls, on the logger category <see cref="Category"/>.
/// It goes to the main log like everything else and, when Gateway:AuditLog names a file, also to that file as
/// JSON lines (<see cref="AuditFileLoggerProvider"/>). Fields only: never a key, a credential or a body.
/// </summary>
internal static partial class AuditLog
{
    public const string Category = "LlmGateway.Audit";

    [LoggerMessage(EventId = GatewayEventIds.AuditRejection, EventName = "Rejection", Level = LogLevel.Information,
        Message = "Rejected {RequestId}: key {KeyId} user {User} run {RunId} {Method} {Path}: {Status} {Code}: {Reason}")]
    public static partial void Rejection(ILogger logger, string requestId, string? keyId, string? user, string? runId, string method, string path, int status, string code, string reason);

    [LoggerMessage(EventId = GatewayEventIds.AdminAction, EventName = "AdminAction", Level = LogLevel.Information,
        Message = "Admin action {Action} on {Target}")]
    public static partial void AdminAction(ILogger logger, string action, string target);

    [LoggerMessage(EventId = GatewayEventIds.AuditApprovalDecision, EventName = "ApprovalDecision", Level = LogLevel.Information,
        Message = "Approval {ApprovalId} {Decision} by {DecidedBy}: {Method} {Tool} {Path} of user {User} run {RunId}, held since {CreatedAt}: {Reason}")]
    public static partial void ApprovalDecision(ILogger logger, string approvalId, string decision, string decidedBy, string method, string tool, string path, string user, string? runId, string createdAt, string reason);
}
