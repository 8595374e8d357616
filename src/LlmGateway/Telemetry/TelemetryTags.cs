namespace LlmGateway.Telemetry;

/// <summary>Tag (Prometheus label) names used by the gateway's instruments.</summary>
internal static class TelemetryTags
{
    public const string User = "user";
    public const string Team = "team";
    public const string Model = "model";
    public const string Status = "status";
    public const string Type = "type";
    public const string Provider = "provider";
    public const string Upstream = "upstream";
    public const string Deployment = "deployment";
    public const string Reason = "reason";
    public const string Result = "result";
    public const string From = "from";
    public const string To = "to";
    public const string Tool = "tool";
    public const string Method = "method";
    public const string Version = "version";
    public const string Kind = "kind";
    public const string Outcome = "outcome";
}
