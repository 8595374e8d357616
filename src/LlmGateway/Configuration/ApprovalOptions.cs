namespace LlmGateway.Configuration;

/// <summary>Human approval of tool calls whose rule says <c>"Approval": true</c> (<c>Gateway:Approvals</c>).</summary>
public sealed record ApprovalsOptions
{
    /// <summary>How long a held call waits for a decision before 409 approval_pending (default 55 s, under common client timeouts).</summary>
    public TimeSpan Wait { get; init; } = TimeSpan.FromSeconds(55);

    /// <summary>How long an undecided approval stays open (default 1 h); after it, a repeat of the call opens a new one.</summary>
    public TimeSpan PendingTtl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>How long a decision holds when the rule names no ApprovalTtl (default 15 min): approved, the call may execute once within it.</summary>
    public TimeSpan ApprovalTtl { get; init; } = TimeSpan.FromMinutes(15);

    /// <summary>Bytes of the request body shown to approvers in GET /admin/approvals (default 2048).</summary>
    public int PreviewBytes { get; init; } = 2048;

    /// <summary>Receives a JSON notice of each new pending approval (POST); empty = none. Never blocks a call.</summary>
    public string? WebhookUrl { get; init; }

    /// <summary>Headers sent with each notice (e.g. a token of the receiver); never logged.</summary>
    public Dictionary<string, string> WebhookHeaders { get; init; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Longest wait for the receiver's answer, per attempt (default 5 s).</summary>
    public TimeSpan WebhookTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Attempts per notice, the first included (default 3).</summary>
    public int WebhookAttempts { get; init; } = 3;

    /// <summary>
    /// Named keys that may decide approvals (GET /admin/approvals, POST .../approve and .../deny), and only that; the
    /// admin key (Gateway:AdminKey) decides as <c>admin</c>. A rule's Approvers names them or one of their groups.
    /// </summary>
    public Dictionary<string, ApproverOptions> Approvers { get; init; } = new(StringComparer.Ordinal);
}

/// <summary>A key that may decide approvals: who decided is its name in the audit trail.</summary>
public sealed record ApproverOptions
{
    /// <summary>The key in plain text (development only; from the environment).</summary>
    public string? Key { get; init; }

    /// <summary>Hex SHA-256 of the key.</summary>
    public string? KeySha256 { get; init; }

    /// <summary>Groups this approver belongs to, e.g. "finance"; a rule may name a group in its Approvers.</summary>
    public List<string> Groups { get; init; } = [];
}

/// <summary>In-run caching of a tool's reads: a repeat of a successful read within the same run is answered by the gateway.</summary>
public sealed record ToolRunCacheOptions
{
    /// <summary>How long an answer is kept within the run (default 5 min).</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Methods whose 2xx answers are kept (default GET); any other method of the run clears the run's entries for the tool.</summary>
    public List<string> Methods { get; init; } = [];

    /// <summary>A hit still counts against the run's Calls ceiling (default true).</summary>
    public bool CountHits { get; init; } = true;

    /// <summary>Bytes of answers kept per run and tool (default 1 MiB); beyond, the oldest go first.</summary>
    public long MaxRunBytes { get; init; } = 1024 * 1024;

    /// <summary>Largest answer kept (default 256 KiB).</summary>
    public long MaxEntryBytes { get; init; } = 256 * 1024;
}
