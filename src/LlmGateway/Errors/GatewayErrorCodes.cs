namespace LlmGateway.Errors;

/// <summary>The <c>error.code</c> values of CONTRACT.md; also the <c>reason</c> label of rejections.</summary>
internal static class GatewayErrorCodes
{
    public const string InvalidApiKey = "invalid_api_key";
    public const string PermissionDenied = "permission_denied";
    public const string RunHalted = "run_halted";
    public const string UserHalted = "user_halted";
    public const string InvalidRequest = "invalid_request_error";
    public const string RequestTooLarge = "request_too_large";
    public const string ModelNotFound = "model_not_found";
    public const string ContextLengthExceeded = "context_length_exceeded";
    public const string BudgetExceeded = "budget_exceeded";
    public const string RunDeadlineExceeded = "run_deadline_exceeded";
    public const string LoopDetected = "loop_detected";
    public const string RateLimitExceeded = "rate_limit_exceeded";
    public const string UpstreamError = "upstream_error";
    public const string UpstreamUnavailable = "upstream_unavailable";
    public const string UpstreamTimeout = "upstream_timeout";
    public const string StoreUnavailable = "store_unavailable";
    public const string StoreFull = "store_full";
    public const string ReplayMiss = "replay_miss";
    public const string IdempotencyInProgress = "idempotency_in_progress";
    public const string IdempotencyKeyReused = "idempotency_key_reused";
    public const string ApprovalPending = "approval_pending";
    public const string ApprovalDenied = "approval_denied";
    public const string InternalError = "internal_error";
}
