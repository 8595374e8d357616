using System.Text;
using LlmGateway.Configuration;
using LlmGateway.Tools;

namespace LlmGateway.Tests.Tools;

public sealed class ToolRuleTests
{
    [Theory]
    [InlineData("GET /rest/api/2/issue/*", "GET", "/rest/api/2/issue/ABC-1", true)]
    [InlineData("GET /rest/api/2/issue/*", "get", "/rest/api/2/issue/ABC-1", true)]
    [InlineData("GET /rest/api/2/issue/*", "GET", "/rest/api/2/issue/ABC-1/comments", false)]
    [InlineData("GET /rest/api/2/issue/*", "GET", "/rest/api/2/issue/", false)]
    [InlineData("GET /rest/api/2/issue/*", "GET", "/rest/api/2/issue", false)]
    [InlineData("GET /rest/api/2/issue/*", "POST", "/rest/api/2/issue/ABC-1", false)]
    [InlineData("GET /rest/api/2/issue/*", "GET", "/REST/api/2/issue/ABC-1", false)]
    [InlineData("GET /a/*/c", "GET", "/a/b/c", true)]
    [InlineData("GET /a/*/c", "GET", "/a/b/d", false)]
    [InlineData("GET /a/**", "GET", "/a", true)]
    [InlineData("GET /a/**", "GET", "/a/b/c/d", true)]
    [InlineData("GET /a/**", "GET", "/ab", false)]
    [InlineData("GET /**", "GET", "/", true)]
    [InlineData("GET /**", "GET", "/anything/at/all", true)]
    [InlineData("* /chat.postMessage", "DELETE", "/chat.postMessage", true)]
    [InlineData("POST /chat.postMessage", "POST", "/chat.postMessage/", false)]
    [InlineData("POST /", "POST", "/", true)]
    [InlineData("POST /", "POST", "/x", false)]
    public void MatchesRoute_MethodAndPathPattern(string allow, string method, string path, bool expected)
    {
        var rule = Parse(allow);

        Assert.Equal(expected, rule.MatchesRoute(method, ToolRule.SplitPath(path)));
    }

    [Theory]
    [InlineData("", "Allow: is required")]
    [InlineData("GET", "must be \"METHOD /path/pattern\"")]
    [InlineData("GET rest/api", "must start with /")]
    [InlineData("G3T /x", "is not an HTTP method")]
    [InlineData("GET /a/**/b", "** may only end")]
    [InlineData("GET /issue-*", "whole segments only")]
    [InlineData("GET /x?y=1", "may not contain a query")]
    public void TryParse_RejectsMalformedRules(string allow, string expectedError)
    {
        Assert.False(ToolRule.TryParse("jira", 0, new ToolRuleOptions { Allow = allow }, out _, out var error));
        Assert.Contains(expectedError, error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryParse_RejectsEmptyBodyConstraint()
    {
        var options = new ToolRuleOptions { Allow = "POST /x", Body = new() { ["channel"] = [] } };

        Assert.False(ToolRule.TryParse("slack", 0, options, out _, out var error));
        Assert.Contains("Body:channel", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"channel":"#engineering","text":"hi"}""", true)]
    [InlineData("""{"channel":"#ops"}""", true)]
    [InlineData("""{"channel":"#general"}""", false)]
    [InlineData("""{"text":"no channel"}""", false)]
    [InlineData("""{"channel":"#engineering","channel":"#general"}""", false)]
    [InlineData("""{"channel":["#engineering"]}""", false)]
    [InlineData("""{"channel":{"name":"#engineering"}}""", false)]
    [InlineData("""["#engineering"]""", false)]
    [InlineData("""not json""", false)]
    public void BodyConstraint_EveryOccurrenceMustBeAllowed(string body, bool expected)
    {
        var permissions = new ToolPermissions([Parse("POST /chat.postMessage", ("channel", ["#engineering", "#ops"]))]);
        var path = ToolRule.SplitPath("/chat.postMessage");

        Assert.Null(permissions.FindUnconditional("POST", path));
        Assert.True(permissions.NeedsBody("POST", path));
        Assert.Equal(expected, permissions.FindForBody("POST", path, Encoding.UTF8.GetBytes(body)) is not null);
    }

    [Theory]
    [InlineData("""{"msg":{"to":{"team":"eng"}},"dry_run":true,"n":3}""", true)]
    [InlineData("""{"msg":{"to":{"team":"eng"}},"dry_run":false,"n":3}""", false)]
    [InlineData("""{"msg":{"to":{"team":"eng"}},"dry_run":true,"n":4}""", false)]
    [InlineData("""{"msg":{"to":"eng"},"dry_run":true,"n":3}""", false)]
    public void BodyConstraint_NestedFieldsNumbersAndBooleans(string body, bool expected)
    {
        var rule = Parse("POST /send", ("msg.to.team", ["eng"]), ("dry_run", ["true"]), ("n", ["3"]));
        var permissions = new ToolPermissions([rule]);

        Assert.Equal(expected, permissions.FindForBody("POST", ToolRule.SplitPath("/send"), Encoding.UTF8.GetBytes(body)) is not null);
    }

    [Fact]
    public void Permissions_FirstUnconditionalRuleWins_AndDescribesItself()
    {
        var permissions = new ToolPermissions([Parse("GET /a/*"), Parse("* /**", index: 1)]);

        Assert.Equal("jira:0 GET /a/*", permissions.FindUnconditional("GET", ToolRule.SplitPath("/a/b"))!.Description);
        Assert.Equal("jira:1 * /**", permissions.FindUnconditional("POST", ToolRule.SplitPath("/a/b"))!.Description);
    }

    private static ToolRule Parse(string allow, params (string Field, List<string> Values)[] body) => Parse(allow, 0, body);

    private static ToolRule Parse(string allow, int index, params (string Field, List<string> Values)[] body)
    {
        var options = new ToolRuleOptions { Allow = allow, Body = body.ToDictionary(b => b.Field, b => b.Values) };
        Assert.True(ToolRule.TryParse("jira", index, options, out var rule, out var error), error);
        return rule!;
    }
}
