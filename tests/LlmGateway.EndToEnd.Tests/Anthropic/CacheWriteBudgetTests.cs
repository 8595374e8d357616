using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Anthropic;

/// <summary>
/// Anthropic bills a prompt written to its cache at the cache-write price (1.25x or 2x the input price). A call's
/// reservation prices every prompt token at the dearest rate a prompt token can be billed at, so 30 concurrent calls
/// whose whole prompt is written to the cache at 2x never spend past a user's budget. Priced at the input rate, the
/// same 30 calls spent about twice the budget.
/// </summary>
public sealed class CacheWriteBudgetTests : IAsyncLifetime
{
    private const int MaxTokens = 10;

    // ASCII: the bytes bound reserves one token a byte, and the mock reports the whole prompt as written to the cache.
    private static readonly string Content = string.Concat(Enumerable.Repeat("cache this context please ", 20));

    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    // Framing as the gateway counts it (4 for the message, 3 for the reply, the role's 4 bytes) is reported as
    // written too, so every reserved prompt token is billed at the cache-write price: the tightest case.
    private static int PromptTokens => Encoding.UTF8.GetByteCount(Content) + 4 + 3 + 4;

    // $1 per million input tokens, $2 per million written to the cache, $1 per million output tokens.
    private static decimal CallCost => ((PromptTokens * 2m) + MaxTokens) / 1_000_000m;

    private static decimal Budget => 4 * CallCost;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync($$"""
        {
          "Gateway": {
            "AdminKey": "{{TestConfigs.AdminKey}}",
            "Providers": { "claude": { "BaseUrl": "{{_mock.BaseUrl}}/v1", "Api": "anthropic" } },
            "Models": { "claude-cached": { "Provider": "claude", "InputUsdPerMTok": 1, "CacheWriteUsdPerMTok": 2, "OutputUsdPerMTok": 1 } },
            "Keys": [ { "Key": "sk-four", "User": "four" } ],
            "Users": { "four": { "Budget": { "Usd": {{Budget.ToString(CultureInfo.InvariantCulture)}}, "Period": "Day" } } },
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
    public async Task ThirtyConcurrentCalls_WholePromptWrittenToTheCache_NeverPassTheBudget()
    {
        await BudgetCalls.AssertBudgetNeverPassedAsync(_gateway.Client, "four", Enumerable.Range(0, 30).Select(_ => Call()), CallCost, Budget, async refused =>
        {
            Assert.Equal((HttpStatusCode)429, refused.StatusCode);
            using var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
            Assert.Equal("rate_limit_error", error.RootElement.GetProperty("error").GetProperty("type").GetString());
        });
    }

    private static HttpRequestMessage Call()
    {
        var body = $$"""{"model":"claude-cached","max_tokens":{{MaxTokens}},"messages":[{"role":"user","content":"{{Content}}"}]}""";
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/messages") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add("x-api-key", "sk-four");
        request.Headers.Add("anthropic-version", MessagesTestBase.AnthropicVersion);
        request.Headers.Add("X-Mock-Usage-Prompt", "0");
        request.Headers.Add("X-Mock-Usage-Cache-Write", PromptTokens.ToString(CultureInfo.InvariantCulture));
        request.Headers.Add("X-Mock-Usage-Completion", MaxTokens.ToString(CultureInfo.InvariantCulture));
        request.Headers.Add("X-Mock-Latency-Ms", "1000");
        return request;
    }
}
