namespace LlmGateway.Telemetry;

/// <summary>The closed sets of values some tags take (see CONTRACT.md, "Prometheus metrics").</summary>
internal static class TelemetryTagValues
{
    // TelemetryTags.Type on llm_gateway_tokens_total
    public const string Input = "input";
    public const string Output = "output";
    public const string CachedInput = "cached_input";

    /// <summary>Anthropic's cache_read_input_tokens (on /v1/messages; OpenAI's cached tokens are <see cref="CachedInput"/>).</summary>
    public const string CacheRead = "cache_read";

    /// <summary>Anthropic's cache_creation_input_tokens.</summary>
    public const string CacheWrite = "cache_write";

    // TelemetryTags.Result on llm_gateway_cache_requests_total
    public const string Hit = "hit";
    public const string Miss = "miss";
    public const string Bypass = "bypass";

    // TelemetryTags.Result on llm_gateway_config_reloads_total
    public const string Success = "success";
    public const string Failure = "failure";

    // TelemetryTags.Reason on llm_gateway_store_unavailable_total (see Redis.StoreFailureReason)
    public const string Replicas = "replicas";
    public const string Timeout = "timeout";
    public const string Error = "error";
}
