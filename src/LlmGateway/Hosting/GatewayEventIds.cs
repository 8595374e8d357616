namespace LlmGateway;

/// <summary>Every log event id of the gateway, in one place so they never collide.</summary>
internal static class GatewayEventIds
{
    public const int ConfigLoaded = 1000;
    public const int ConfigReloaded = 1001;
    public const int ConfigRejected = 1002;
    public const int ConfigReadFailed = 1003;

    public const int Unhandled = 1900;

    public const int LlmCall = 2000;
    public const int UpstreamFailed = 2001;
    public const int UpstreamStreamBroken = 2002;
    public const int UpstreamGarbage = 2003;
    public const int ClientDisconnected = 2004;

    public const int Retrying = 2100;
    public const int RetryRefused = 2101;
    public const int CircuitOpened = 2102;
    public const int CircuitHalfOpened = 2103;
    public const int CircuitClosed = 2104;
    public const int DeploymentStoreUnavailable = 2150;

    public const int StoreUnavailable = 3000;
    public const int SettleFailed = 3001;
    public const int SettleRetried = 3002;
    public const int SettleAbandoned = 3003;
    public const int LeaseReturnsLost = 3004;
    public const int LeaseBlocksClosed = 3005;
    public const int AdminAction = 3100;
    public const int AuditRejection = 3101;
    public const int AuditFileWriteFailed = 3102;
    public const int AuditFileRecovered = 3103;
    public const int AuditApprovalDecision = 3104;

    public const int ToolCallAudit = 4000;
    public const int ToolUpstreamFailed = 4001;
    public const int IdempotencyStoreUnavailable = 4002;
    public const int IdempotencyStoreFull = 4003;

    public const int ApprovalOpened = 4100;
    public const int ApprovalStoreUnavailable = 4101;
    public const int ApprovalWebhookFailed = 4102;
    public const int ApprovalWebhookDropped = 4103;
    public const int ApprovalSubscriptionFailed = 4104;

    public const int CacheStoreFailed = 5000;
    public const int CacheEntryCorrupt = 5001;
    public const int RecordingFailed = 5100;
    public const int ReplayMiss = 5101;

    public const int RunRecordFailed = 5200;
    public const int RunEnded = 5201;
    public const int RunSweepFailed = 5202;
    public const int RunRecordsDropped = 5203;
}
