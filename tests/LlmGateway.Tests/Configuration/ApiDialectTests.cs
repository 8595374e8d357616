using System.Text;
using LlmGateway.Configuration;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Tests.Configuration;

/// <summary>A provider speaks OpenAI's API or Anthropic's; a stand-in must speak the API of the model it stands in for.</summary>
public sealed class ApiDialectTests
{
    private static GatewayConfig Load(string providers, string models) => GatewayConfigLoader.Load(Encoding.UTF8.GetBytes($$"""
    {
      "Gateway": {
        "Providers": { {{providers}} },
        "Models": { {{models}} },
        "Keys": [ { "Key": "sk-1", "User": "u" } ]
      }
    }
    """), new ConfigurationBuilder().Build());

    private const string Providers = """
        "openai": { "BaseUrl": "http://127.0.0.1:9/v1" },
        "claude": { "BaseUrl": "http://127.0.0.1:9/v1", "AuthHeader": "x-api-key" },
        "local-claude": { "BaseUrl": "http://127.0.0.1:9/v1", "Api": "anthropic" }
        """;

    [Fact]
    public void Api_IsInferredFromXApiKey_OrSet()
    {
        var config = Load(Providers, """ "m": { "Provider": "openai", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 1 } """);

        Assert.Equal(ApiDialect.OpenAi, config.Providers["openai"].Api);
        Assert.Equal(ApiDialect.Anthropic, config.Providers["claude"].Api);
        Assert.Equal(ApiDialect.Anthropic, config.Providers["local-claude"].Api);
        Assert.Equal(new Uri("http://127.0.0.1:9/v1/messages"), config.Providers["claude"].Messages);
        Assert.Equal(new Uri("http://127.0.0.1:9/v1/messages/count_tokens"), config.Providers["claude"].CountTokens);
    }

    [Fact]
    public void FallbackOrDowngrade_OfTheOtherApi_IsRefused_NamingTheKeyPath()
    {
        var errors = Assert.Throws<GatewayConfigException>(() => Load(Providers, """
            "sonnet": { "Provider": "claude", "InputUsdPerMTok": 3, "OutputUsdPerMTok": 15, "Fallbacks": [ "haiku", "gpt" ], "DowngradeTo": "gpt" },
            "haiku": { "Provider": "local-claude", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 5 },
            "gpt": { "Provider": "openai", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 1 }
            """)).Errors;

        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("Gateway:Models:sonnet:Fallbacks:1: model 'gpt' speaks the openai API", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Gateway:Models:sonnet:DowngradeTo: model 'gpt' speaks the openai API", StringComparison.Ordinal));
    }

    [Fact]
    public void UnknownApi_IsRefused()
    {
        var errors = Assert.Throws<GatewayConfigException>(() => Load(""" "p": { "BaseUrl": "http://127.0.0.1:9/v1", "Api": "gemini" } """,
            """ "m": { "Provider": "p", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 1 } """)).Errors;

        Assert.Contains("Gateway:Providers:p:Api: unknown API 'gemini'; use openai or anthropic", errors);
    }

    [Fact]
    public void CacheWritePrice_IsAKnownKey_AndMustNotBeNegative()
    {
        var errors = Assert.Throws<GatewayConfigException>(() => Load(Providers,
            """ "m": { "Provider": "claude", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 1, "CacheWriteUsdPerMTok": -1 } """)).Errors;

        Assert.Single(errors);
        Assert.StartsWith("Gateway:Models:m:CacheWriteUsdPerMTok:", errors[0]);
    }
}
