using System.Globalization;
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
        await BudgetCalls.AssertBudgetNeverPassedAsync(_gateway.Client, "ten", Enumerable.Range(0, 40).Select(_ => Call()), CallCost, Budget,
            refused => Http.AssertErrorAsync(refused, 429, "budget_exceeded", shouldRetry: false));
    }

    private static HttpRequestMessage Call() => Http.Post(
        "/v1/chat/completions",
        Http.Chat(model: "qwen-max", content: Content, extra: $",\"max_tokens\":{MaxTokens}"),
        "sk-ten",
        ("X-Mock-Usage-Prompt", PromptTokensCharged.ToString(CultureInfo.InvariantCulture)),
        ("X-Mock-Usage-Completion", MaxTokens.ToString(CultureInfo.InvariantCulture)),
        ("X-Mock-Latency-Ms", "1000"));
}
