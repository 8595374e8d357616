using System.Text;
using LlmGateway.Configuration;
using LlmGateway.Tools;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Tests.Tools;

public sealed class ApprovalConfigValidationTests
{
    [Fact]
    public void Load_BindsApprovalRules_ApproversAndRunCache()
    {
        var config = Load(
            """[ "GET /**", { "Allow": "POST /refunds", "Approval": true, "Approvers": [ "finance" ], "ApprovalTtl": "00:30:00" } ]""",
            approvals: """ "Wait": "00:00:20", "WebhookUrl": "http://127.0.0.1:9/hook", "Approvers": { "lead": { "Key": "sk-approver", "Groups": [ "finance" ] } } """,
            toolOptions: """ "RunCache": { "Ttl": "00:01:00", "CountHits": false } """);

        var rules = config.Options.Keys[0].Tools["ledger"];
        Assert.False(rules[0].Approval);
        Assert.True(rules[1].Approval);
        Assert.Equal(["finance"], rules[1].Approvers);
        Assert.Equal(TimeSpan.FromMinutes(30), rules[1].ApprovalTtl);
        Assert.Equal(TimeSpan.FromSeconds(20), config.Options.Approvals.Wait);
        Assert.Equal(["finance"], config.Options.Approvals.Approvers["lead"].Groups);
        Assert.False(config.Options.Tools["ledger"].RunCache!.CountHits);
        Assert.True(ToolRule.TryParse("ledger", 1, rules[1], out var compiled, out _));
        Assert.True(compiled!.RequiresApproval);
        Assert.Equal(["finance"], compiled.Approvers);
    }

    [Fact]
    public void Load_Defaults_Wait55Seconds_AndNoRunCache()
    {
        var config = Load("""[ "GET /**" ]""");

        Assert.Equal(TimeSpan.FromSeconds(55), config.Options.Approvals.Wait);
        Assert.Null(config.Options.Tools["ledger"].RunCache);
    }

    [Theory]
    [InlineData("""[ { "Allow": "POST /refunds", "Approvers": [ "admin" ] } ]""", "", "", "Gateway:Keys:0:Tools:ledger:0: Approvers and ApprovalTtl need \"Approval\": true")]
    [InlineData("""[ { "Allow": "POST /refunds", "Approval": true, "Approvers": [ "nobody" ] } ]""", "", "", "Gateway:Keys:0:Tools:ledger:0:Approvers:0: 'nobody' is neither 'admin' nor an approver or group")]
    [InlineData("""[ { "Allow": "POST /refunds", "Approval": true, "ApprovalTtl": "00:00:00" } ]""", "", "", "Gateway:Keys:0:Tools:ledger:0:ApprovalTtl: must be positive")]
    [InlineData("""[ "GET /**" ]""", """ "Wait": "00:20:00" """, "", "Gateway:Approvals:Wait: must be 00:00:00 to 00:10:00")]
    [InlineData("""[ "GET /**" ]""", """ "WebhookUrl": "ftp://x/hook" """, "", "Gateway:Approvals:WebhookUrl: 'ftp://x/hook' is not an absolute http(s) URL")]
    [InlineData("""[ "GET /**" ]""", """ "Approvers": { "admin": { "Key": "k" } } """, "", "Gateway:Approvals:Approvers:admin: the name must be")]
    [InlineData("""[ "GET /**" ]""", """ "Approvers": { "lead": { } } """, "", "Gateway:Approvals:Approvers:lead: exactly one of Key or KeySha256 is required")]
    [InlineData("""[ "GET /**" ]""", "", """ "RunCache": { "Methods": [ "POST" ] } """, "Gateway:Tools:ledger:RunCache:Methods:0: 'POST' is not a read")]
    [InlineData("""[ "GET /**" ]""", "", """ "RunCache": { "Ttl": "00:00:00" } """, "Gateway:Tools:ledger:RunCache:Ttl: must be positive")]
    public void Load_RejectsBadApprovalAndRunCacheSettings_NamingTheKeyPath(string rules, string approvals, string toolOptions, string expected)
    {
        var exception = Assert.Throws<GatewayConfigException>(() => Load(rules, approvals, toolOptions));

        Assert.True(exception.Errors.Any(e => e.Contains(expected, StringComparison.Ordinal)), string.Join(" / ", exception.Errors));
    }

    [Theory]
    [InlineData("Approvals", "Wiat")]
    [InlineData("Approvals:Approvers:lead", "Grups")]
    [InlineData("Tools:ledger:RunCache", "CountHit")]
    public void Load_RejectsUnknownKeys_InTheNewSections(string section, string key)
    {
        var exception = Assert.Throws<GatewayConfigException>(() => Load(
            """[ "GET /**" ]""",
            approvals: $$""" "Approvers": { "lead": { "Key": "sk-a"{{(section.EndsWith("lead", StringComparison.Ordinal) ? $", \"{key}\": 1" : "")}} } }{{(section == "Approvals" ? $", \"{key}\": 1" : "")}} """,
            toolOptions: $$""" "RunCache": { "Ttl": "00:01:00"{{(section.EndsWith("RunCache", StringComparison.Ordinal) ? $", \"{key}\": 1" : "")}} } """));

        Assert.Contains($"Gateway:{section}:{key}: unknown key", exception.Errors);
    }

    private static GatewayConfig Load(string rules, string approvals = "", string toolOptions = "") => GatewayConfigLoader.Load(Encoding.UTF8.GetBytes($$"""
        {
          "Gateway": {
            "Providers": { "mock": { "BaseUrl": "http://127.0.0.1:9/v1" } },
            "Tools": { "ledger": { "BaseUrl": "http://127.0.0.1:9/api"{{(toolOptions.Length > 0 ? "," + toolOptions : "")}} } },
            "Approvals": { {{approvals}} },
            "Keys": [ { "Key": "sk-1", "User": "u", "Tools": { "ledger": {{rules}} } } ]
          }
        }
        """), new ConfigurationBuilder().Build());
}
