using System.Collections.Frozen;

namespace LlmGateway.Forwarding;

/// <summary>Header names the gateway reads and writes.</summary>
internal static class GatewayHeaders
{
    public const string RequestId = "X-Request-Id";
    public const string RunId = "X-Run-Id";
    public const string Model = "X-Gateway-Model";
    public const string Downgrade = "X-Gateway-Downgrade";
    public const string CostUsd = "X-Gateway-Cost-Usd";
    public const string Attempts = "X-Gateway-Attempts";

    /// <summary>The deployment of the served model that answered (the provider's name for a model with Provider alone).</summary>
    public const string Deployment = "X-Gateway-Deployment";
    public const string UpstreamRequestId = "X-Upstream-Request-Id";
    public const string ApiKey = "api-key";
    public const string XApiKey = "x-api-key";
    public const string GatewayPrefix = "X-Gateway-";

    /// <summary>Provider headers that describe the gateway's own account, never the caller's: not passed on.</summary>
    public static readonly string[] ProviderResponseHeadersToDrop =
    [
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
        "openai-organization", "openai-project", "set-cookie", "x-request-id",
        "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset",
        "anthropic-ratelimit-input-tokens-limit", "anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-reset",
        "anthropic-ratelimit-output-tokens-limit", "anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-reset",
        "anthropic-organization-id",
    ];

    /// <summary><see cref="ProviderResponseHeadersToDrop"/> for lookups: header names compare case-insensitively.</summary>
    public static readonly FrozenSet<string> ProviderResponseHeadersToDropSet =
        ProviderResponseHeadersToDrop.ToFrozenSet(StringComparer.OrdinalIgnoreCase);
}
