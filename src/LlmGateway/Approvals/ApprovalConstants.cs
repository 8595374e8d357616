namespace LlmGateway.Approvals;

/// <summary>Names of the approval feature: metric tag values and timings.</summary>
internal static class ApprovalConstants
{
    public const string Approved = "approved";
    public const string Denied = "denied";
    public const string Expired = "expired";
    public const string PendingTimeout = "pending_timeout";
    public const string DecisionTag = "decision";

    public const string WebhookDelivered = "delivered";
    public const string WebhookFailed = "failed";
    public const string WebhookDropped = "dropped";

    /// <summary>A held call reads its approval again at least this often, so a decision on another replica reaches it even if its notification is lost.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

    /// <summary>How often the monitor lists pending approvals (gauges, expiry counts).</summary>
    public static readonly TimeSpan MonitorInterval = TimeSpan.FromSeconds(15);

    /// <summary>Most pending approvals listed at once.</summary>
    public const int MaxListed = 1000;
}
