using System.Net;
using System.Text.Json;
using Anthropic.Exceptions;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Anthropic;

/// <summary>Every refusal of the gateway on /v1/messages is an Anthropic error the official SDK parses.</summary>
public sealed class AnthropicErrorTests : MessagesTestBase
{
    [Fact]
    public async Task UnknownKey_IsAuthenticationError401()
    {
        using var client = Client(key: "sk-not-a-gateway-key");

        var ex = await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() => client.Messages.Create(Params(UserTurn("mock-claude", "hi"))));

        AssertAnthropicError(ex, HttpStatusCode.Unauthorized, "authentication_error", "invalid_api_key");
        Assert.Empty(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task ModelTheKeyMayNotUse_IsPermissionError403()
    {
        using var client = Client(key: "sk-bob");

        var ex = await Assert.ThrowsAsync<AnthropicForbiddenException>(() => client.Messages.Create(Params(UserTurn("mock-claude", "hi"))));

        AssertAnthropicError(ex, HttpStatusCode.Forbidden, "permission_error", "permission_denied");
    }

    [Fact]
    public async Task UnknownModel_IsNotFoundError404()
    {
        using var client = Client();

        var ex = await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Create(Params(UserTurn("claude-imaginary", "hi"))));

        AssertAnthropicError(ex, HttpStatusCode.NotFound, "not_found_error", "model_not_found");
    }

    [Fact]
    public async Task MissingOrNonPositiveMaxTokens_IsInvalidRequest400_BeforeAnyUpstreamCall()
    {
        using var client = Client();

        foreach (var body in new[]
        {
            """{"model":"mock-claude","messages":[{"role":"user","content":"hi"}]}""",
            """{"model":"mock-claude","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}""",
            """{"model":"mock-claude","max_tokens":null,"messages":[{"role":"user","content":"hi"}]}""",
        })
        {
            var ex = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Params(body)));
            AssertAnthropicError(ex, HttpStatusCode.BadRequest, "invalid_request_error", "invalid_request_error");
            Assert.Contains("max_tokens", ex.ApiMessage);
        }

        Assert.Empty(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task DuplicatedMaxTokens_IsRefused400_NamingTheField()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/messages",
            """{"model":"mock-claude","max_tokens":10,"max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}""", key: null, ("x-api-key", TestConfigs.Key)));

        var error = await AnthropicErrorOf(response, HttpStatusCode.BadRequest, "invalid_request_error");
        Assert.Equal("max_tokens", error.GetProperty("param").GetString());
        Assert.Equal("false", response.Headers.GetValues("x-should-retry").Single());
        Assert.Empty(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task OpenAiModelOnMessagesRoute_IsInvalidRequest400_NamingTheRouteToUse()
    {
        using var client = Client();

        var ex = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Params(UserTurn("mock-small", "hi"))));

        AssertAnthropicError(ex, HttpStatusCode.BadRequest, "invalid_request_error", "invalid_request_error");
        Assert.Contains("/v1/chat/completions", ex.ApiMessage);
        Assert.Empty(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task BudgetExhausted_IsRateLimitError429_NamingTheLimit_NotToBeRetried()
    {
        using var client = Client(key: "sk-poor");

        // Worst case 1000 output tokens at $1000 per million = $1, over the user's $0.001.
        var ex = await Assert.ThrowsAsync<AnthropicRateLimitException>(() => client.Messages.Create(Params(UserTurn("claude-metered", "hi", maxTokens: 1000))));

        AssertAnthropicError(ex, HttpStatusCode.TooManyRequests, "rate_limit_error", "budget_exceeded");
        Assert.Contains("USD budget of $0.001", ex.ApiMessage);
        var raw = await RawAsync("sk-poor", UserTurn("claude-metered", "hi", maxTokens: 1000));
        Assert.Equal("false", raw.Headers.GetValues("x-should-retry").Single());
    }

    [Fact]
    public async Task TeamBudgetExhausted_IsRateLimitError429_NamingTheTeamsLimit()
    {
        using var client = Client(key: "sk-thrifty");

        // The member has no budget of their own; the team's $0.001 is under the $1 worst case.
        var ex = await Assert.ThrowsAsync<AnthropicRateLimitException>(() => client.Messages.Create(Params(UserTurn("claude-metered", "hi", maxTokens: 1000))));

        AssertAnthropicError(ex, HttpStatusCode.TooManyRequests, "rate_limit_error", "budget_exceeded");
        Assert.Contains("thrifty", ex.ApiMessage);
        Assert.Empty(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task OverTheUsersTpm_IsRateLimitError429_AndWhatFitsGoesThrough()
    {
        using var client = Client(key: "sk-tpm");

        // A call reserves its prompt bound plus max_tokens against the TPM window: 100 fits in 500, 1000 never does.
        await client.Messages.Create(Params(UserTurn("mock-claude", "hi", maxTokens: 100)));
        var ex = await Assert.ThrowsAsync<AnthropicRateLimitException>(() => client.Messages.Create(Params(UserTurn("mock-claude", "hi", maxTokens: 1000))));

        AssertAnthropicError(ex, HttpStatusCode.TooManyRequests, "rate_limit_error", "rate_limit_exceeded");
        Assert.Contains("token", ex.ApiMessage, StringComparison.OrdinalIgnoreCase);
        Assert.Single(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task LoopInARun_IsRateLimitError429_NamingTheLimit_NotToBeRetried()
    {
        using var client = Client(key: "sk-loop", headers: [("X-Run-Id", "loop-run")]);
        var body = UserTurn("mock-claude", "same again");
        await client.Messages.Create(Params(body));

        var ex = await Assert.ThrowsAsync<AnthropicRateLimitException>(() => client.Messages.Create(Params(body)));

        AssertAnthropicError(ex, HttpStatusCode.TooManyRequests, "rate_limit_error", "loop_detected");
        Assert.Contains("limit of 1 identical requests", ex.ApiMessage);
        var raw = await RawAsync("sk-loop", body, ("X-Run-Id", "loop-run"));
        Assert.Equal("false", raw.Headers.GetValues("x-should-retry").Single());
    }

    [Fact]
    public async Task RunDeadlinePassed_IsRateLimitError429_NamingTheLimit_NotToBeRetried()
    {
        using var client = Client(key: "sk-deadline", headers: [("X-Run-Id", "late-run")]);
        await client.Messages.Create(Params(UserTurn("mock-claude", "first step")));
        await Task.Delay(50); // the run's deadline is 1 ms after its first call

        var ex = await Assert.ThrowsAsync<AnthropicRateLimitException>(() => client.Messages.Create(Params(UserTurn("mock-claude", "second step"))));

        AssertAnthropicError(ex, HttpStatusCode.TooManyRequests, "rate_limit_error", "run_deadline_exceeded");
        Assert.Contains("deadline", ex.ApiMessage);
    }

    [Fact]
    public async Task HaltedRun_IsPermissionError403()
    {
        using (var halt = await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/halted-run/halt")))
        {
            Assert.Equal(HttpStatusCode.OK, halt.StatusCode);
        }

        using var client = Client(headers: [("X-Run-Id", "halted-run")]);
        var ex = await Assert.ThrowsAsync<AnthropicForbiddenException>(() => client.Messages.Create(Params(UserTurn("mock-claude", "hi"))));

        AssertAnthropicError(ex, HttpStatusCode.Forbidden, "permission_error", "run_halted");
        Assert.Empty(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task BodyOverTheLimit_IsRequestTooLarge413()
    {
        using var client = Client();

        var ex = await Assert.ThrowsAsync<AnthropicContentTooLargeException>(() => client.Messages.Create(Params(UserTurn("mock-claude", new string('x', 70_000)))));

        AssertAnthropicError(ex, HttpStatusCode.RequestEntityTooLarge, "request_too_large", "request_too_large");
    }

    [Fact]
    public async Task RateLimit_IsRateLimitError429_WithRetryAfter_AndAnthropicRateLimitHeaders()
    {
        using var client = Client(key: "sk-rpm");
        using var first = await RawAsync("sk-rpm", UserTurn("mock-claude", "first"));
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);

        // The caller's gateway limit, in Anthropic's names next to OpenAI's.
        Assert.Equal("1", first.Headers.GetValues("anthropic-ratelimit-requests-limit").Single());
        Assert.Equal("0", first.Headers.GetValues("anthropic-ratelimit-requests-remaining").Single());
        var reset = DateTimeOffset.Parse(first.Headers.GetValues("anthropic-ratelimit-requests-reset").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(reset, DateTimeOffset.UtcNow.AddSeconds(-5), DateTimeOffset.UtcNow.AddMinutes(2));
        Assert.Equal("1", first.Headers.GetValues("x-ratelimit-limit-requests").Single());

        var ex = await Assert.ThrowsAsync<AnthropicRateLimitException>(() => client.Messages.Create(Params(UserTurn("mock-claude", "second"))));

        AssertAnthropicError(ex, HttpStatusCode.TooManyRequests, "rate_limit_error", "rate_limit_exceeded");
        var raw = await RawAsync("sk-rpm", UserTurn("mock-claude", "third"));
        Assert.True(int.Parse(raw.Headers.GetValues("retry-after").Single(), System.Globalization.CultureInfo.InvariantCulture) >= 1);
    }

    [Fact]
    public async Task OpenCircuit_IsOverloadedError529()
    {
        using var failing = Client(headers: [("X-Mock-Status", "500")]);
        for (var i = 0; i < 2; i++)
        {
            // Three attempts each: enough failures to open the breaker (4 at a 50 % failure ratio).
            await Assert.ThrowsAnyAsync<AnthropicApiException>(() => failing.Messages.Create(Params(UserTurn("claude-breaker", $"fail {i}"))));
        }

        using var client = Client();
        var ex = await Assert.ThrowsAsync<AnthropicOverloadedException>(() => client.Messages.Create(Params(UserTurn("claude-breaker", "after"))));

        AssertAnthropicError(ex, (HttpStatusCode)529, "overloaded_error", "upstream_unavailable");
        Assert.Contains("circuit is open", ex.ApiMessage);
    }

    [Fact]
    public async Task ProvidersOwn4xx_PassesThroughUnchanged()
    {
        using var client = Client(headers: [("X-Mock-Status", "400")]);

        var ex = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Params(UserTurn("mock-claude", "hi"))));

        Assert.Equal("mock injected 400", ex.ApiMessage);
        using var body = JsonDocument.Parse(ex.ResponseBody);
        Assert.False(body.RootElement.GetProperty("error").TryGetProperty("code", out _), "the provider's answer was rewritten");
    }

    [Fact]
    public async Task CountTokens_Refusals_AreAnthropicShaped_Too()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/messages/count_tokens", """{"messages":[]}""", key: null, ("x-api-key", TestConfigs.Key)));

        await AnthropicErrorOf(response, HttpStatusCode.BadRequest, "invalid_request_error");
    }

    private static void AssertAnthropicError(AnthropicApiException ex, HttpStatusCode status, string type, string code)
    {
        Assert.Equal(status, ex.StatusCode);
        using var body = JsonDocument.Parse(ex.ResponseBody);
        Assert.Equal("error", body.RootElement.GetProperty("type").GetString());
        var error = body.RootElement.GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrWhiteSpace(body.RootElement.GetProperty("request_id").GetString()));
        Assert.Equal(error.GetProperty("message").GetString(), ex.ApiMessage);
    }

    private static async Task<JsonElement> AnthropicErrorOf(HttpResponseMessage response, HttpStatusCode status, string type)
    {
        Assert.Equal(status, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("error", body.RootElement.GetProperty("type").GetString());
        var error = body.RootElement.GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        return error.Clone();
    }

    private async Task<HttpResponseMessage> RawAsync(string key, string body, params (string Name, string Value)[] headers) =>
        await Gateway.Client.SendAsync(Http.Post("/v1/messages", body, key: null, [("x-api-key", key), .. headers]));
}
