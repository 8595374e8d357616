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
        "Resilience": { "AttemptTimeout": "00:00:02", "StreamIdleTimeout": "00:00:03" },
        "Limits": { "MaxRequestBodyBytes": {{maxBodyBytes}} }
      }
    }
    """;

    public static string Sha256(string key) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)));
}
