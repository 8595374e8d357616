namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>Gateway configs for tests, pointing at a MockLlmServer.</summary>
public static class TestConfigs
{
    public const string Key = "sk-test-alice";
    public const string OtherKey = "sk-test-bob";
    public const string ProviderKey = "sk-provider-secret-123";

    /// <summary>
    /// Alice may use every model; Bob only mock-small. The mock provider has a key so tests can see the
    /// gateway swap the caller's credentials for the provider's.
    /// </summary>
    public static string Default(string mockBaseUrl, string extraKeys = "", long maxBodyBytes = 1_048_576) => $$"""
    {
      "Gateway": {
        "Providers": {
          "mock": { "BaseUrl": "{{mockBaseUrl}}/v1", "ApiKey": "{{ProviderKey}}" },
          "nokey": { "BaseUrl": "{{mockBaseUrl}}/v1", "ApiKeyEnv": "LLMGW_TEST_UNSET_KEY_VARIABLE" }
        },
        "Models": {
          "mock-small": { "Provider": "mock", "InputUsdPerMTok": 1.00, "OutputUsdPerMTok": 2.00, "ContextWindow": 32000 },
          "mock-large": { "Provider": "mock", "InputUsdPerMTok": 2.50, "CachedInputUsdPerMTok": 1.25, "OutputUsdPerMTok": 10.00, "ContextWindow": 128000 },
          "mock-embed": { "Provider": "mock", "InputUsdPerMTok": 0.02, "OutputUsdPerMTok": 0 },
          "needs-key": { "Provider": "nokey", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 1 }
        },
        "Keys": [
          { "Key": "{{Key}}", "Id": "alice-key", "User": "alice" },
          { "KeySha256": "{{Sha256(OtherKey)}}", "User": "bob", "Models": [ "mock-small" ] }{{extraKeys}}
        ],
        "Users": { "alice": { "Team": "research" } },
        "Teams": { "research": { } },
        "Resilience": { "AttemptTimeout": "00:00:02", "StreamIdleTimeout": "00:00:03", "RetryBaseDelay": "00:00:00.050" },
        "Limits": { "MaxRequestBodyBytes": {{maxBodyBytes}} }
      }
    }
    """;

    public static string Sha256(string key) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)));

    public const string AdminKey = "admin-secret-key";

    /// <summary>
    /// One user per limit so tests stay independent. "metered" charges only output, $1000 per million tokens
    /// ($0.001 a token), and the mock is told to produce exactly max_tokens, so worst case == actual cost.
    /// </summary>
    /// <param name="storeTimeout">Gateway:Store:Timeout; tests of limits across replicas give Redis more than a loaded machine's 200 ms.</param>
    public static string Budgets(string mockBaseUrl, string? redis = null, string onUnavailable = "Deny", string storeTimeout = "00:00:00.200") => $$"""
    {
      "Gateway": {
        "Redis": "{{redis ?? ""}}",
        "AdminKey": "{{AdminKey}}",
        "Store": { "OnUnavailable": "{{onUnavailable}}", "Timeout": "{{storeTimeout}}", "KeyPrefix": "llmgw-{{Guid.NewGuid():N}}:" },
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
        "Models": {
          "metered": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DefaultMaxOutputTokens": 10 },
          "mock-small": { "Provider": "mock", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 },
          "tiny-context": { "Provider": "mock", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2, "ContextWindow": 50 }
        },
        "Keys": [
          { "Key": "sk-spender", "User": "spender" },
          { "Key": "sk-rpm", "User": "rpm-user" },
          { "Key": "sk-tpm", "User": "tpm-user" },
          { "Key": "sk-calls", "User": "calls-user" },
          { "Key": "sk-loop", "User": "loop-user" },
          { "Key": "sk-inflight", "User": "inflight-user" },
          { "Key": "sk-runner", "User": "runner" },
          { "Key": "sk-free", "User": "free-user" },
          { "Key": "sk-deadline", "User": "deadline-user" }
        ],
        "Users": {
          "spender": { "Budget": { "Usd": 1.0, "Period": "Day" } },
          "rpm-user": { "Rpm": 5 },
          "tpm-user": { "Tpm": 100000 },
          "calls-user": { "Runs": { "Calls": 3 } },
          "loop-user": { "Runs": { "MaxRepeats": 2 } },
          "inflight-user": { "MaxInFlight": 1 },
          "runner": { "Runs": { "Usd": 5, "MaxInputTokens": 200 } },
          "free-user": { "Budget": { "Usd": 0.000001, "Period": "Day" } },
          "deadline-user": { "Runs": { "Deadline": "00:00:01" } }
        },
        "Limits": { "MaxRequestUsd": 0.5 },
        "Resilience": { "AttemptTimeout": "00:00:05" }
      }
    }
    """;

    /// <summary>
    /// Resilience scenarios. "flaky" falls back to "mock-small"; "solo" has no fallback; "breaker-model" has a
    /// circuit that opens after 4 failures; "premium" downgrades to "mock-small" (budget user "thrifty" at 50 %,
    /// "pauper" whose budget only fits the cheap model); "slow-model" lives on a second provider with a bulkhead of 2.
    /// </summary>
    public static string Resilience(string mockBaseUrl, string slowMockBaseUrl, int retryBudgetMinPerSecond = 100) => $$"""
    {
      "Gateway": {
        "Providers": {
          "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" },
          "breaker": { "BaseUrl": "{{mockBaseUrl}}/v1" },
          "slow": { "BaseUrl": "{{slowMockBaseUrl}}/v1", "MaxConcurrency": 2, "MaxQueue": 0 }
        },
        "Models": {
          "mock-small": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 100 },
          "flaky": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 100, "Fallbacks": [ "mock-small" ] },
          "solo": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 100 },
          "breaker-model": { "Provider": "breaker", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 100 },
          "premium": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 10000, "DowngradeTo": "mock-small" },
          "slow-model": { "Provider": "slow", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 100 }
        },
        "Keys": [
          { "Key": "{{Key}}", "User": "alice" },
          { "Key": "sk-thrifty", "User": "thrifty" },
          { "Key": "sk-pauper", "User": "pauper" }
        ],
        "Users": {
          "thrifty": { "Budget": { "Usd": 1.0, "Period": "Day" }, "DowngradeAt": 0.5 },
          "pauper": { "Budget": { "Usd": 0.05, "Period": "Day" } }
        },
        "Resilience": {
          "MaxAttempts": 3, "MaxRetryWait": "00:00:05", "MaxTotalRetryWait": "00:00:10", "RetryBaseDelay": "00:00:00.020",
          "AttemptTimeout": "00:00:05", "RetryBudgetRatio": 0.2, "MinRetriesPerSecond": {{retryBudgetMinPerSecond}}, "MaxRetriesPerRun": 0,
          "CircuitBreaker": { "FailureRatio": 0.5, "SamplingDuration": "00:00:30", "MinimumThroughput": 4, "BreakDuration": "00:00:01" }
        }
      }
    }
    """;
}
