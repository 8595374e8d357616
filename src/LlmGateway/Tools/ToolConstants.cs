namespace LlmGateway.Tools;

/// <summary>Names of the tool gateway: route, headers, error codes and the audit log category.</summary>
internal static class ToolConstants
{
    public const string RoutePrefix = "/tools/";
    public const string Route = "/tools/{tool}/{**path}";
    public const string IdempotencyKeyHeader = "Idempotency-Key";
    public const string StepHeader = "X-Gateway-Step";
    public const string ReplayedHeader = "Idempotent-Replayed";
    public const string ReplayBodyHeader = "X-Gateway-Replay-Body";
    public const string CacheHeader = "X-Gateway-Cache";
    public const string ToolNotFound = "tool_not_found";
    public const int MaxIdempotencyKeyLength = 255;

    /// <summary>The ILogger category of the audit trail, so it can be routed to its own sink.</summary>
    public const string AuditCategory = Telemetry.AuditLog.Category;

    /// <summary>Statuses a tool may answer transiently; retried only when retrying is safe.</summary>
    public static bool IsRetryableStatus(int status) => status is 408 or 429 or 500 or 502 or 503 or 504;

    /// <summary>Methods whose repetition has no further effect (RFC 9110 idempotent methods).</summary>
    public static bool IsIdempotentMethod(string method) =>
        HttpMethodsEqual(method, "GET") || HttpMethodsEqual(method, "HEAD") || HttpMethodsEqual(method, "PUT")
        || HttpMethodsEqual(method, "DELETE") || HttpMethodsEqual(method, "OPTIONS");

    /// <summary>The method as a bounded metric label.</summary>
    public static string MethodLabel(string method) => method.ToUpperInvariant() switch
    {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };

    private static bool HttpMethodsEqual(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);
}
