using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// The overspend holes of fields the gateway reads and the provider reads again: <c>n</c> (every choice is generated
/// and charged) and duplicated keys (the provider takes the last). MockLlm is told to bill what a real provider would.
/// </summary>
public sealed class ReadFieldHoleTests : GatewayTestBase
{
    protected override string Config(string mockBaseUrl) => TestConfigs.Budgets(mockBaseUrl);

    [Fact]
    public async Task N_IsReservedFor_SoFiftyChoicesCannotOverspend()
    {
        // 50 choices × 100 tokens at $0.001 = $5: over spender's $1 budget (and the $0.50 per-request ceiling).
        var before = Mock.Log.Count;
        using var response = await Gateway.Client.SendAsync(Http.Post(
            "/v1/chat/completions",
            Http.Chat(model: "metered", extra: ",\"n\":50,\"max_tokens\":100"),
            "sk-spender",
            ("X-Mock-Usage-Completion", "5000")));

        await Http.AssertErrorAsync(response, 429, "budget_exceeded", shouldRetry: false);
        Assert.Equal(before, Mock.Log.Count);
        using var state = await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/users/spender"));
        var user = System.Text.Json.JsonDocument.Parse(await state.Content.ReadAsStringAsync()).RootElement;
        Assert.True(user.GetProperty("spent_usd").GetDecimal() <= 1.0m);
    }

    [Theory]
    [InlineData(",\"max_tokens\":1,\"max_tokens\":900000", "max_tokens")]
    [InlineData(",\"n\":1,\"n\":50", "n")]
    [InlineData(",\"model\":\"mock-small\"", "model")]
    public async Task DuplicatedReadField_Is400_NamingIt_BeforeAnyUpstreamCall(string extra, string param)
    {
        var before = Mock.Log.Count;
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "metered", extra: extra), "sk-spender"));

        await Http.AssertErrorAsync(response, 400, "invalid_request_error", shouldRetry: false);
        Assert.Equal(param, (await Http.ErrorOf(response)).GetProperty("param").GetString());
        Assert.Equal(before, Mock.Log.Count);
    }
}
