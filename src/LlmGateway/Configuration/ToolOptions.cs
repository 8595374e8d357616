namespace LlmGateway.Configuration;

/// <summary>
/// One allow rule of a key for a tool: the contract's plain string <c>"GET /rest/api/2/issue/*"</c>, or an object
/// with body constraints <c>{ "Allow": "POST /chat.postMessage", "Body": { "channel": ["#engineering"] } }</c>.
/// </summary>
[System.ComponentModel.TypeConverter(typeof(ToolRuleOptionsConverter))]
public sealed record ToolRuleOptions
{
    /// <summary>"METHOD /path/pattern": METHOD or *, path segments where * matches one segment and a final ** any rest.</summary>
    public string? Allow { get; init; }

    /// <summary>JSON body fields (dotted paths for nested objects) and the values each may take; all must match.</summary>
    public Dictionary<string, List<string>> Body { get; init; } = new(StringComparer.Ordinal);

    /// <summary>A call this rule allows is held until a person approves it (Gateway:Approvals).</summary>
    public bool Approval { get; init; }

    /// <summary>Who may decide: approver names or groups of Gateway:Approvals:Approvers, or "admin"; empty = any approver.</summary>
    public List<string> Approvers { get; init; } = [];

    /// <summary>How long an approval (or denial) holds; default Gateway:Approvals:ApprovalTtl.</summary>
    public TimeSpan? ApprovalTtl { get; init; }
}

/// <summary>A tool API forwarded under /tools/{tool}/.</summary>
public sealed record ToolOptions
{
    public string? BaseUrl { get; init; }

    /// <summary>Headers added to every call, e.g. the tool's credential (from the environment: Gateway__Tools__NAME__Headers__Authorization); never logged.</summary>
    public Dictionary<string, string> Headers { get; init; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Longest wait for one attempt's response headers (and a buffered body); 504 upstream_timeout after it.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>At most this many calls of this tool in flight on one gateway; 0 = no limit.</summary>
    public int MaxConcurrency { get; init; } = 32;

    /// <summary>Calls that may wait for a free slot (at most Timeout); beyond, 503 upstream_unavailable at once.</summary>
    public int MaxQueue { get; init; }

    /// <summary>Attempts per call, retries included, where retrying is safe (see README); 1 = never retry.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Longest wait before a retry, including a tool's Retry-After.</summary>
    public TimeSpan MaxRetryWait { get; init; } = TimeSpan.FromSeconds(10);

    public ToolBreakerOptions Breaker { get; init; } = new();

    /// <summary>Keep this tool's successful reads for the rest of a run (X-Run-Id); off when absent.</summary>
    public ToolRunCacheOptions? RunCache { get; init; }
}

/// <summary>The circuit breaker of one tool: opens when too many attempts fail, answering 503 at once until it may close.</summary>
public sealed record ToolBreakerOptions
{
    /// <summary>Fraction of failed attempts (timeouts, connection failures, 5xx) that opens the circuit; 0 disables the breaker.</summary>
    public double FailureRatio { get; init; } = 0.5;

    /// <summary>Attempts within the sampling window before the ratio counts (at least 2).</summary>
    public int MinimumThroughput { get; init; } = 10;

    public TimeSpan SamplingDuration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an open circuit refuses calls before one trial call.</summary>
    public TimeSpan BreakDuration { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>Lets a plain string bind as a rule without body constraints (the configuration binder uses it for scalar values).</summary>
public sealed class ToolRuleOptionsConverter : System.ComponentModel.TypeConverter
{
    public override bool CanConvertFrom(System.ComponentModel.ITypeDescriptorContext? context, Type sourceType) =>
        sourceType == typeof(string) || base.CanConvertFrom(context, sourceType);

    public override object? ConvertFrom(System.ComponentModel.ITypeDescriptorContext? context, System.Globalization.CultureInfo? culture, object value) =>
        value is string rule ? new ToolRuleOptions { Allow = rule } : base.ConvertFrom(context, culture, value);
}
