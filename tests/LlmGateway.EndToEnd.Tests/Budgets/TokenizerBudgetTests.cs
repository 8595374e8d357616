using System.Globalization;
using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using Microsoft.ML.Tokenizers;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// Reservations of a gpt-4o prompt are sized by its tokenizer: 40 concurrent calls against a budget that fits exactly
/// 10 of them, as the provider charges them, admit 9 (the 10th does not fit by the one framing token per message the
/// gateway reserves beyond OpenAI's count). Sized by bytes / 4, the same budget admitted 8. MockLlm counts gpt-4o
/// prompts as OpenAI does (o200k_base, 3 tokens per message, 3 for the reply), so "fits exactly 10" is the
/// provider's arithmetic, and spend is checked against it.
/// </summary>
public abstract class TokenizerBudgetTestsBase : IAsyncLifetime
{
    /// <summary>~1 KB of ordinary English: o200k_base reads ~4.7 bytes per token here, so bytes / 4 over-reserves ~20 %.</summary>
    protected const string Content =
        "Good morning. My order 48213 left the warehouse in Rotterdam on Monday morning, but the tracking page has not "
        + "changed since then, and I am starting to worry that the parcel has been lost or sent to the wrong address. "
        + "Could you please tell me whether it is delayed, what the usual transit time to Lyon is for a standard "
        + "delivery, and whether I can still change the delivery address to my office? The office is in the centre of "
        + "the city, near the river, and it is open from nine in the morning to six in the evening on weekdays. I would "
        + "also like to know if a signature is required on delivery, because nobody is at home during the day, and "
        + "whether the parcel can be left with a neighbour or at a pick-up point instead. Thank you very much in advance "
        + "for checking, and sorry for the long message; I have been waiting for this parcel for a while now.";

    private const int MaxTokens = 20;

    private MockLlmServer _mock = null!;

    protected GatewayServer Gateway { get; private set; } = null!;

    /// <summary>The Redis connection string, or null for the in-memory store.</summary>
    protected abstract string? Redis { get; }

    /// <summary>OpenAI's charge for one call: its cookbook's count of the prompt plus the output, at $0.001 a token.</summary>
    protected static decimal CallCost { get; } = (3 + 3 + Count("user") + Count(Content) + MaxTokens) / 1000m;

    private static decimal Budget => 10 * CallCost;

    public virtual async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        Gateway = await GatewayServer.StartAsync($$"""
        {
          "Gateway": {
            "Redis": "{{Redis ?? ""}}",
            "AdminKey": "{{TestConfigs.AdminKey}}",
            "Store": { "KeyPrefix": "llmgw-{{Guid.NewGuid():N}}:", "Timeout": "00:00:05" },
            "Providers": { "mock": { "BaseUrl": "{{_mock.BaseUrl}}/v1" } },
            "Models": { "gpt-4o": { "Provider": "mock", "InputUsdPerMTok": 1000, "OutputUsdPerMTok": 1000, "ContextWindow": 128000 } },
            "Keys": [ { "Key": "sk-ten", "User": "ten" }, { "Key": "sk-watch", "User": "watch" } ],
            "Users": {
              "ten": { "Budget": { "Usd": {{Budget.ToString(CultureInfo.InvariantCulture)}}, "Period": "Day" } },
              "watch": { "Budget": { "Usd": {{Budget.ToString(CultureInfo.InvariantCulture)}}, "Period": "Day" } }
            },
            "Resilience": { "AttemptTimeout": "00:00:10" }
          }
        }
        """);
        await Gateway.WaitReadyAsync();
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await _mock.DisposeAsync();
    }

    protected async Task RunFortyConcurrentCallsAgainstABudgetForTen()
    {
        // Held upstream for a second, so all 40 reservations are made while the first ones are still in flight.
        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => Gateway.Client.SendAsync(Call("sk-ten", latencyMs: 1000))));

        var admitted = responses.Where(r => r.StatusCode == HttpStatusCode.OK).ToArray();
        foreach (var response in admitted)
        {
            Assert.Equal(CallCost, decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture));
        }

        foreach (var rejected in responses.Where(r => r.StatusCode != HttpStatusCode.OK))
        {
            await Http.AssertErrorAsync(rejected, 429, "budget_exceeded", shouldRetry: false);
        }

        // A call is settled just after its answer reached the caller: wait until nothing is held.
        var user = await BudgetCalls.SettledAsync(Gateway.Client, "/admin/users/ten");

        var spent = user.GetProperty("spent_usd").GetDecimal();
        Assert.True(spent <= Budget, $"spent ${spent} of a ${Budget} budget");
        Assert.Equal(admitted.Length * CallCost, spent);
        Assert.Equal(0m, user.GetProperty("reserved_usd").GetDecimal());
        Assert.True(admitted.Length >= 9, $"{admitted.Length} of 40 calls admitted by a budget that fits 10");
    }

    protected async Task RunReservationCoversTheProvidersCharge()
    {
        var call = Gateway.Client.SendAsync(Call("sk-watch", latencyMs: 1500));
        var reserved = 0m;
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (reserved == 0 && DateTime.UtcNow < deadline && !call.IsCompleted)
        {
            reserved = (await UserAsync("watch")).GetProperty("reserved_usd").GetDecimal();
            await Task.Delay(reserved == 0 ? 20 : 0);
        }

        using var response = await call;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var charged = decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture);
        Assert.Equal(CallCost, charged);

        // Counted, not bounded by bytes: one token ($0.001) over OpenAI's count for the one message's framing.
        Assert.Equal(charged + 0.001m, reserved);
    }

    protected async Task RunStreamCutBeforeItsUsage_IsChargedByCount()
    {
        var body = Http.Chat(model: "gpt-4o", content: Content, stream: true, extra: $",\"max_tokens\":{MaxTokens}");
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, "sk-watch", ("X-Mock-Fail-After-Chunks", "6")));
        var events = Http.DataEvents(await response.Content.ReadAsStringAsync());
        var delivered = string.Concat(events
            .Where(e => e.StartsWith("{\"id\"", StringComparison.Ordinal))
            .Select(e => JsonDocument.Parse(e).RootElement.GetProperty("choices")[0].GetProperty("delta"))
            .Select(d => d.TryGetProperty("content", out var c) ? c.GetString() : null));

        var requestId = response.Headers.GetValues("X-Request-Id").Single();
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(requestId), "call record");
        Assert.Equal("StreamBroken", record.GetStructuredStateValue("Outcome"));
        Assert.Equal("True", record.GetStructuredStateValue("UsageEstimated"));

        // The prompt as admission counts it (4 per message, 3 for the reply), the delivered text by o200k_base.
        Assert.True(delivered.Length > "Mock reply to:".Length, delivered);
        Assert.Equal((4 + 3 + Count("user") + Count(Content)).ToString(CultureInfo.InvariantCulture), record.GetStructuredStateValue("InputTokens"));
        Assert.Equal(Count(delivered).ToString(CultureInfo.InvariantCulture), record.GetStructuredStateValue("OutputTokens"));
    }

    private static int Count(string text) => TiktokenTokenizer.CreateForModel("gpt-4o").CountTokens(text);

    private static HttpRequestMessage Call(string key, int latencyMs) => Http.Post(
        "/v1/chat/completions",
        Http.Chat(model: "gpt-4o", content: Content, extra: $",\"max_tokens\":{MaxTokens}"),
        key,
        ("X-Mock-Usage-Completion", MaxTokens.ToString(CultureInfo.InvariantCulture)),
        ("X-Mock-Latency-Ms", latencyMs.ToString(CultureInfo.InvariantCulture)));

    private async Task<JsonElement> UserAsync(string user)
    {
        using var response = await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, $"/admin/users/{user}"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }
}

/// <summary>The tokenizer-sized reservations with the in-memory store.</summary>
public sealed class TokenizerBudgetTests : TokenizerBudgetTestsBase
{
    protected override string? Redis => null;

    [Fact]
    public Task FortyConcurrentCalls_BudgetForTen_AdmitAtLeastNine_AndNeverOverspend() => RunFortyConcurrentCallsAgainstABudgetForTen();

    [Fact]
    public Task Reservation_IsTheCountedPrompt_AtLeastWhatTheProviderCharges() => RunReservationCoversTheProvidersCharge();

    [Fact]
    public Task StreamCutBeforeItsUsage_IsChargedByTheTokensOfPromptAndDeliveredText() => RunStreamCutBeforeItsUsage_IsChargedByCount();
}

/// <summary>The same with the Redis store (a real redis-server).</summary>
[RequiresRedisServer]
public sealed class TokenizerBudgetRedisTests(RedisServerFixture redis) : TokenizerBudgetTestsBase, IClassFixture<RedisServerFixture>
{
    protected override string? Redis => redis.ConnectionString;

    public override Task InitializeAsync()
    {
        if (RedisServer.SkipReason is null && !redis.IsRunning)
        {
            redis.Start();
        }

        return base.InitializeAsync();
    }

    [RedisFact]
    public Task FortyConcurrentCalls_BudgetForTen_AdmitAtLeastNine_AndNeverOverspend() => RunFortyConcurrentCallsAgainstABudgetForTen();
}
