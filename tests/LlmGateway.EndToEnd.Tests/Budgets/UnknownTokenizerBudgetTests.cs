using System.Globalization;
using System.Net;
using System.Text;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// A model whose tokenizer the gateway does not know (Claude, Llama, a custom name) reserves its prompt's UTF-8
/// bytes, so no input makes spend pass a limit. The prompt here is Chinese text, which providers read at about one
/// token per character (3 UTF-8 bytes): the old bytes / 4 estimate reserved 0.75 tokens a character, and 40
/// concurrent calls against a budget that fits 10 (as charged) spent ~12 calls' worth.
/// </summary>
public sealed class UnknownTokenizerBudgetTests : IAsyncLifetime
{
    private const int Chars = 200;
    private const int MaxTokens = 20;

    // Framing as the gateway counts it: 4 for the message, 3 for the reply, plus the role's 4 bytes.
    private const int PromptTokensCharged = Chars + 4 + 3 + 4;

    private static readonly string Content = string.Concat(Enumerable.Repeat("请帮我查一下订单的物流状态谢谢", (Chars / 15) + 1))[..Chars];

    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    private static decimal CallCost => (PromptTokensCharged + MaxTokens) / 1000m;

    private static decimal Budget => 10 * CallCost;

    public async Task InitializeAsync()
    {
        Assert.Equal(3 * Chars, Encoding.UTF8.GetByteCount(Content));
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync($$"""
        {
          "Gateway": {
            "AdminKey": "{{TestConfigs.AdminKey}}",
            "Providers": { "mock": { "BaseUrl": "{{_mock.BaseUrl}}/v1" } },
            "Models": { "qwen-max": { "Provider": "mock", "InputUsdPerMTok": 1000, "OutputUsdPerMTok": 1000, "ContextWindow": 32000 } },
            "Keys": [ { "Key": "sk-ten", "User": "ten" } ],
            "Users": { "ten": { "Budget": { "Usd": {{Budget.ToString(CultureInfo.InvariantCulture)}}, "Period": "Day" } } },
            "Resilience": { "AttemptTimeout": "00:00:10" }
          }
        }
        """);
        await _gateway.WaitReadyAsync();
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
    }

    [Fact]
    public async Task FortyConcurrentCalls_OneTokenPerCharacter_NeverPassTheBudget()
    {
        // Held upstream for a second, so all 40 reservations are made while the first ones are still in flight.
        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => _gateway.Client.SendAsync(Call())));

        var admitted = responses.Where(r => r.StatusCode == HttpStatusCode.OK).ToArray();
        Assert.NotEmpty(admitted);
        foreach (var response in admitted)
        {
            Assert.Equal(CallCost, decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture));
        }

        foreach (var rejected in responses.Where(r => r.StatusCode != HttpStatusCode.OK))
        {
            await Http.AssertErrorAsync(rejected, 429, "budget_exceeded", shouldRetry: false);
        }

        var user = await BudgetCalls.SettledAsync(_gateway.Client, "/admin/users/ten");

        var spent = user.GetProperty("spent_usd").GetDecimal();
        Assert.Equal(admitted.Length * CallCost, spent);
        Assert.True(spent <= Budget, $"spent ${spent} of a ${Budget} budget ({admitted.Length} calls admitted)");
    }

    private static HttpRequestMessage Call() => Http.Post(
        "/v1/chat/completions",
        Http.Chat(model: "qwen-max", content: Content, extra: $",\"max_tokens\":{MaxTokens}"),
        "sk-ten",
        ("X-Mock-Usage-Prompt", PromptTokensCharged.ToString(CultureInfo.InvariantCulture)),
        ("X-Mock-Usage-Completion", MaxTokens.ToString(CultureInfo.InvariantCulture)),
        ("X-Mock-Latency-Ms", "1000"));
}
