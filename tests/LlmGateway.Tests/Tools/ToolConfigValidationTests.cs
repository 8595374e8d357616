using System.Text;
using LlmGateway.Configuration;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Tests.Tools;

public sealed class ToolConfigValidationTests
{
    [Fact]
    public void Load_BindsRuleObjects_WithBodyConstraints()
    {
        var config = Load("""[ { "Allow": "POST /chat.postMessage", "Body": { "channel": [ "#engineering" ] } } ]""");

        var rule = Assert.Single(config.Options.Keys[0].Tools["slack"]);
        Assert.Equal("POST /chat.postMessage", rule.Allow);
        Assert.Equal(["#engineering"], rule.Body["channel"]);
    }

    [Fact]
    public void Load_BindsPlainStringRules_AsInTheContract_BesideRuleObjects()
    {
        var config = Load("""[ "GET /rest/api/2/issue/*", { "Allow": "POST /chat.postMessage", "Body": { "channel": [ "#engineering" ] } } ]""");

        var rules = config.Options.Keys[0].Tools["slack"];
        Assert.Equal("GET /rest/api/2/issue/*", rules[0].Allow);
        Assert.Empty(rules[0].Body);
        Assert.Equal(["#engineering"], rules[1].Body["channel"]);
    }

    [Theory]
    [InlineData("""[ { "Allow": "POST chat.postMessage" } ]""", "Gateway:Keys:0:Tools:slack:0:Allow: the path pattern 'chat.postMessage' must start with /")]
    [InlineData("""[ "POST chat.postMessage" ]""", "Gateway:Keys:0:Tools:slack:0:Allow: the path pattern 'chat.postMessage' must start with /")]
    [InlineData("""[ { "Allow": "GET /x", "Body": { "channel": [ ] } } ]""", "Gateway:Keys:0:Tools:slack:0:Body:channel: list at least one allowed value")]
    public void Load_RejectsBadRules_NamingTheKeyPath(string rules, string expected)
    {
        var exception = Assert.Throws<GatewayConfigException>(() => Load(rules));

        Assert.True(exception.Errors.Any(e => e.Contains(expected, StringComparison.Ordinal)), string.Join(" / ", exception.Errors));
    }

    [Fact]
    public void Load_RejectsRulesForUnknownTools_AndBadToolSettings()
    {
        var exception = Assert.Throws<GatewayConfigException>(() => Load("[]", tool: "teams", toolOptions: """ "Timeout": "00:00:00", "MaxAttempts": 0, "Breaker": { "MinimumThroughput": 1 } """));

        Assert.Contains("Gateway:Keys:0:Tools:teams: unknown tool 'teams'", exception.Errors);
        Assert.Contains("Gateway:Tools:slack:Timeout: must be positive", exception.Errors);
        Assert.Contains("Gateway:Tools:slack:MaxAttempts: must be 1 to 10", exception.Errors);
        Assert.Contains("Gateway:Tools:slack:Breaker:MinimumThroughput: must be at least 2", exception.Errors);
    }

    private static GatewayConfig Load(string rules, string tool = "slack", string toolOptions = "") => GatewayConfigLoader.Load(Encoding.UTF8.GetBytes($$"""
        {
          "Gateway": {
            "Providers": { "mock": { "BaseUrl": "http://127.0.0.1:9/v1" } },
            "Tools": { "slack": { "BaseUrl": "http://127.0.0.1:9/api"{{(toolOptions.Length > 0 ? "," + toolOptions : "")}} } },
            "Keys": [ { "Key": "sk-1", "User": "u", "Tools": { "{{tool}}": {{rules}} } } ]
          }
        }
        """), new ConfigurationBuilder().Build());
}
