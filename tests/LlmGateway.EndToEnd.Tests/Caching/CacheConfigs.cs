using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>Gateway configs with the response cache on, pointing at a MockLlmServer.</summary>
public static class CacheConfigs
{
    /// <summary>Alice's key may record runs (AllowRecord); Bob's may not.</summary>
    public const string Alice = "sk-cache-alice";
    public const string Bob = "sk-cache-bob";

    public static string Enabled(string mockBaseUrl, string? redis = null, string? keyPrefix = null, string scope = "User", string ttl = "01:00:00", string extraCache = "", string extraStore = "") => $$"""
    {
      "Gateway": {
        "Redis": "{{redis ?? ""}}",
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Store": { "Timeout": "00:00:00.500", "KeyPrefix": "{{keyPrefix ?? "llmgw-" + Guid.NewGuid().ToString("N") + ":"}}"{{extraStore}} },
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
        "Models": {
          "mock-small": { "Provider": "mock", "InputUsdPerMTok": 1.00, "OutputUsdPerMTok": 2.00 },
          "mock-large": { "Provider": "mock", "InputUsdPerMTok": 2.50, "OutputUsdPerMTok": 10.00 },
          "mock-embed": { "Provider": "mock", "InputUsdPerMTok": 0.02, "OutputUsdPerMTok": 0 }
        },
        "Keys": [
          { "Key": "{{Alice}}", "User": "alice", "AllowRecord": true },
          { "Key": "{{Bob}}", "User": "bob" }
        ],
        "Cache": { "Enabled": true, "Ttl": "{{ttl}}", "Scope": "{{scope}}"{{extraCache}} },
        "Resilience": { "AttemptTimeout": "00:00:05" }
      }
    }
    """;

    /// <summary>A deterministic chat request (temperature 0) with the given content.</summary>
    public static string Chat(string content, string model = "mock-small", bool stream = false, string extra = ",\"temperature\":0") =>
        Http.Chat(model: model, content: content, stream: stream, extra: extra);
}
