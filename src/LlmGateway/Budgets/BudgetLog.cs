using LlmGateway.Telemetry;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Budgets;

/// <summary>The admission log lines shared by LLM and tool calls.</summary>
internal static partial class BudgetLog
{
    [LoggerMessage(EventId = GatewayEventIds.StoreUnavailable, EventName = "StoreUnavailable", Level = LogLevel.Warning, Message = "Request {RequestId}: budget store unavailable, policy {Policy}: {Reason}")]
    public static partial void StoreUnavailable(ILogger logger, string requestId, string policy, string reason);

    [LoggerMessage(EventId = GatewayEventIds.SettleFailed, EventName = "SettleFailed", Level = LogLevel.Error, Message = "Request {RequestId}: reservation {ReservationId} could not be settled ({CostUsd} USD) at once: {Reason}")]
    public static partial void SettleFailed(ILogger logger, string requestId, string reservationId, decimal costUsd, string reason);
}
