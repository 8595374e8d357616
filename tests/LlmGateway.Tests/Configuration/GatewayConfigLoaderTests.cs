using System.Text;
using LlmGateway.Configuration;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Tests.Configuration;

public sealed class GatewayConfigLoaderTests
{
    private const string Valid = """
    {
      "Gateway": {
        "Providers": { "p": { "BaseUrl": "http://127.0.0.1:9/v1" } },
        "Models": { "m": { "Provider": "p", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2, "Fallbacks": [] } },
        "Keys": [ { "Key": "sk-1", "User": "u" } ],
        "Runs": { "Deadline": "00:10:00" }
      }
    }
    """;

    private static readonly IConfiguration NoOverrides = new ConfigurationBuilder().Build();

    private static GatewayConfig Load(string json) => GatewayConfigLoader.Load(Encoding.UTF8.GetBytes(json), NoOverrides);

    private static IReadOnlyList<string> Errors(string json) => Assert.Throws<GatewayConfigException>(() => Load(json)).Errors;

    [Fact]
    public void Load_ValidConfig_CompilesRoutesAndVersion()
    {
        var config = Load(Valid);

        Assert.Equal(12, config.Version.Length);
        Assert.Equal(new Uri("http://127.0.0.1:9/v1/chat/completions"), config.Models["m"].Provider.ChatCompletions);
        Assert.Equal(TimeSpan.FromMinutes(10), config.Options.Runs.Deadline);
        Assert.Equal(Load(Valid).Version, config.Version);
    }

    [Fact]
    public void Load_UnknownProvider_NamesKeyPath()
    {
        Assert.Contains("Gateway:Models:m:Provider: unknown provider 'nope'", Errors(Valid.Replace("\"Provider\": \"p\"", "\"Provider\": \"nope\"")));
    }

    [Fact]
    public void Load_UnknownTokenizer_NamesKeyPathAndChoices()
    {
        var errors = Errors(Valid.Replace("\"Fallbacks\": []", "\"Fallbacks\": [], \"Tokenizer\": \"o200k\""));

        Assert.Contains("Gateway:Models:m:Tokenizer: unknown tokenizer 'o200k'; use o200k_base, cl100k_base, bytes or estimate", errors);
    }

    [Fact]
    public void Load_Tokenizer_DefaultsFromTheUpstreamName_ElseTheKey_UnlessSet()
    {
        var config = Load("""
        {
          "Gateway": {
            "Providers": { "p": { "BaseUrl": "http://127.0.0.1:9/v1" } },
            "Models": {
              "m1": { "Provider": "p", "UpstreamModel": "gpt-4o-2024-08-06", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 },
              "gpt-4-turbo": { "Provider": "p", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 },
              "gpt-4o": { "Provider": "p", "UpstreamModel": "my-azure-deployment", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 },
              "pinned": { "Provider": "p", "UpstreamModel": "gpt-4o", "Tokenizer": "estimate", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 },
              "custom": { "Provider": "p", "Tokenizer": "cl100k_base", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 }
            },
            "Keys": [ { "Key": "sk-1", "User": "u" } ]
          }
        }
        """);

        Assert.Equal(LlmGateway.Accounting.TokenizerKind.O200kBase, config.Models["m1"].Tokenizer);
        Assert.Equal(LlmGateway.Accounting.TokenizerKind.Cl100kBase, config.Models["gpt-4-turbo"].Tokenizer);
        Assert.Equal(LlmGateway.Accounting.TokenizerKind.Bytes, config.Models["gpt-4o"].Tokenizer); // the name sent upstream decides
        Assert.Equal(LlmGateway.Accounting.TokenizerKind.Estimate, config.Models["pinned"].Tokenizer);
        Assert.Equal(LlmGateway.Accounting.TokenizerKind.Cl100kBase, config.Models["custom"].Tokenizer);
    }

    [Fact]
    public void Load_ModelWithoutPrice_NamesKeyPath()
    {
        Assert.Contains(Errors(Valid.Replace("\"OutputUsdPerMTok\": 2, ", "")), e => e.StartsWith("Gateway:Models:m:OutputUsdPerMTok:", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_NegativeWaitForReplicas_NamesKeyPath()
    {
        var json = Valid.Replace("\"Runs\": { \"Deadline\": \"00:10:00\" }", "\"Runs\": { \"Deadline\": \"00:10:00\" }, \"Store\": { \"WaitForReplicas\": -1 }");

        Assert.Contains("Gateway:Store:WaitForReplicas: must not be negative", Errors(json));
    }

    [Fact]
    public void Load_CollectsEveryError_NotJustTheFirst()
    {
        var json = Valid
            .Replace("\"InputUsdPerMTok\": 1", "\"InputUsdPerMTok\": -1")
            .Replace("\"Runs\": { \"Deadline\": \"00:10:00\" }", "\"Runs\": { \"Usd\": -5 }, \"Users\": { \"u\": { \"Team\": \"ghost\", \"Budget\": { \"Usd\": -1 } } }");

        var errors = Errors(json);

        Assert.Contains("Gateway:Models:m:InputUsdPerMTok: must not be negative", errors);
        Assert.Contains("Gateway:Runs:Usd: must not be negative", errors);
        Assert.Contains("Gateway:Users:u:Team: unknown team 'ghost'", errors);
        Assert.Contains("Gateway:Users:u:Budget:Usd: must not be negative", errors);
    }

    [Fact]
    public void Load_BadValueType_NamesKeyPath()
    {
        Assert.Contains(Errors(Valid.Replace("\"InputUsdPerMTok\": 1", "\"InputUsdPerMTok\": \"cheap\"")), e => e.Contains("Gateway:Models:m:InputUsdPerMTok", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_UnknownSetting_IsRejected()
    {
        Assert.Contains(Errors(Valid.Replace("\"Fallbacks\": []", "\"Falbacks\": []")), e => e.Contains("Falbacks", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_InvalidJson_SaysSo() => Assert.Contains(Errors("{ \"Gateway\": "), e => e.Contains("not valid JSON", StringComparison.Ordinal));

    [Fact]
    public void Load_KeyWithBothPlainAndHash_IsRejected()
    {
        Assert.Contains("Gateway:Keys:0: exactly one of Key or KeySha256 is required",
            Errors(Valid.Replace("\"Key\": \"sk-1\"", "\"Key\": \"sk-1\", \"KeySha256\": \"" + new string('a', 64) + "\"")));
    }

    [Fact]
    public void Load_EnvironmentOverride_WinsOverFile()
    {
        var overrides = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Gateway:Providers:p:ApiKey"] = "from-env" }).Build();

        var config = GatewayConfigLoader.Load(Encoding.UTF8.GetBytes(Valid), overrides);

        Assert.Equal("Bearer from-env", config.Providers["p"].AuthHeaderValue);
    }
}
