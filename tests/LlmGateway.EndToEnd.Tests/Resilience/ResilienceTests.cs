using System.Globalization;
using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Resilience;

/// <summary>Retries, fallbacks, circuit breakers, bulkheads and downgrades against MockLlm's fault injection over real HTTP.</summary>
public sealed class ResilienceTests : IAsyncLifetime
{
    private MockLlmServer _mock = null!;
    private MockLlmServer _slowMock = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _slowMock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(TestConfigs.Resilience(_mock.BaseUrl, _slowMock.BaseUrl));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _slowMock.DisposeAsync();
        await _mock.DisposeAsync();
    }

    public static TheoryData<string, string, double> AskedWaits => new()
    {
        { "X-Mock-Retry-After-Ms", "300", 0.3 },
        { "X-Mock-Retry-After", "1", 1.0 },
    };

    [Theory]
    [MemberData(nameof(AskedWaits))]
    public async Task Upstream429_WithAskedWait_IsRetriedOnce_NoEarlierThanAsked(string header, string value, double seconds)
    {
        var scenario = Guid.NewGuid().ToString("N");
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "solo"), headers:
            [("X-Mock-Status", "429"), ("X-Mock-Fail-Times", "1"), ("X-Mock-Scenario", scenario), (header, value)]));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("2", response.Headers.GetValues("X-Gateway-Attempts").Single());
        var attempts = Attempts(_mock, scenario);
        Assert.Equal(2, attempts.Count);
        Assert.True(attempts[1] - attempts[0] >= TimeSpan.FromSeconds(seconds), $"second attempt after {(attempts[1] - attempts[0]).TotalMilliseconds} ms");
    }

    [Fact]
    public async Task Upstream429_WithHttpDateRetryAfter_WaitsUntilThatDate()
    {
        var scenario = Guid.NewGuid().ToString("N");
        var until = DateTimeOffset.UtcNow.AddSeconds(2);
        until = new DateTimeOffset(until.Year, until.Month, until.Day, until.Hour, until.Minute, until.Second, TimeSpan.Zero);
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "solo"), headers:
            [("X-Mock-Status", "429"), ("X-Mock-Fail-Times", "1"), ("X-Mock-Scenario", scenario), ("X-Mock-Retry-After", until.ToString("r", CultureInfo.InvariantCulture))]));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var attempts = Attempts(_mock, scenario);
        Assert.Equal(2, attempts.Count);

        // The mock's clock and the date share the machine's clock; allow for the mock's stopwatch-based timestamps.
        Assert.True(attempts[1] >= until.AddMilliseconds(-50), $"second attempt at {attempts[1]:O}, asked for {until:O}");
    }

    [Theory]
    [InlineData(400)]
    [InlineData(401)]
    public async Task Upstream4xx_IsNotRetried_AndReachesTheCallerUnchanged(int status)
    {
        var scenario = Guid.NewGuid().ToString("N");
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "solo"), headers:
            [("X-Mock-Status", status.ToString(CultureInfo.InvariantCulture)), ("X-Mock-Scenario", scenario)]));

        Assert.Equal(status, (int)response.StatusCode);
        Assert.Contains($"mock injected {status}", await response.Content.ReadAsStringAsync());
        Assert.Single(Attempts(_mock, scenario));
    }

    [Fact]
    public async Task RetryAfterLongerThanCap_IsNotWaited_FallbackServed()
    {
        var scenario = Guid.NewGuid().ToString("N");
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "flaky"), headers:
            [("X-Mock-Status", "429"), ("X-Mock-Fail-Times", "1"), ("X-Mock-Scenario", scenario), ("X-Mock-Retry-After", "30")]));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("mock-small", response.Headers.GetValues("X-Gateway-Model").Single());
        Assert.Equal("fallback", response.Headers.GetValues("X-Gateway-Downgrade").Single());
        var attempts = _mock.Log.Snapshot().Where(r => r.Headers.TryGetValue("X-Mock-Scenario", out var s) && s == scenario).ToList();
        Assert.Equal(["flaky", "mock-small"], attempts.Select(a => a.Model));
        Assert.Contains("\"model\":\"mock-small\"", attempts[1].Body);
        Assert.True(attempts[1].ReceivedAt - attempts[0].ReceivedAt < TimeSpan.FromSeconds(5), "the gateway waited for the long Retry-After");
        Assert.Contains("llm_gateway_downgrades_total{from=\"flaky\",reason=\"fallback\",to=\"mock-small\"}", await _gateway.Client.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task RetryAfterLongerThanCap_WithoutFallback_ReturnsErrorWithTheUpstreamRetryAfter()
    {
        var scenario = Guid.NewGuid().ToString("N");
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "solo"), headers:
            [("X-Mock-Status", "429"), ("X-Mock-Scenario", scenario), ("X-Mock-Retry-After", "30")]));

        await Http.AssertErrorAsync(response, 429, "rate_limit_exceeded", shouldRetry: true);
        Assert.Equal(TimeSpan.FromSeconds(30), response.Headers.RetryAfter?.Delta);
        Assert.Single(Attempts(_mock, scenario));
    }

    [Fact]
    public async Task StreamFailedAfterFirstChunk_IsNotRetried()
    {
        var scenario = Guid.NewGuid().ToString("N");
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "flaky", content: "one two three four", stream: true), headers:
            [("X-Mock-Fail-After-Chunks", "1"), ("X-Mock-Scenario", scenario)]));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Contains("\"code\":\"upstream_error\"", text);
        Assert.Single(Attempts(_mock, scenario));
    }

    [Fact]
    public async Task Circuit_OpensAfterFailures_RefusesWithoutTouchingUpstream_ThenClosesAfterProbe()
    {
        await using var gateway = await GatewayServer.StartAsync(TestConfigs.Resilience(_mock.BaseUrl, _slowMock.BaseUrl).Replace("\"MaxAttempts\": 3", "\"MaxAttempts\": 1"));
        for (var i = 0; i < 4; i++)
        {
            using var failed = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "breaker-model"), headers: ("X-Mock-Status", "500")));
            await Http.AssertErrorAsync(failed, 502, "upstream_error", shouldRetry: true);
        }

        var before = _mock.Log.Count;
        using var refused = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "breaker-model")));
        await Http.AssertErrorAsync(refused, 503, "upstream_unavailable", shouldRetry: true);
        Assert.NotNull(refused.Headers.RetryAfter);
        Assert.Equal(before, _mock.Log.Count);
        Assert.Contains("llm_gateway_circuit_state{upstream=\"breaker/breaker-model\"} 2", await gateway.Client.GetStringAsync("/metrics"));

        // After the break duration (1 s) one probe goes through; it succeeds and the circuit closes.
        var probe = await Http.EventuallyAsync(async () =>
        {
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "breaker-model")));
            return response.StatusCode == HttpStatusCode.OK ? (HttpStatusCode?)HttpStatusCode.OK : null;
        }, "a successful half-open probe", timeoutMs: 10000);
        Assert.Equal(HttpStatusCode.OK, probe);
        using var after = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "breaker-model")));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        Assert.Contains("llm_gateway_circuit_state{upstream=\"breaker/breaker-model\"} 0", await gateway.Client.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task StormOf429s_UpstreamAttemptsStayWithinTheRetryBudget()
    {
        // Budget: 20 % of requests plus 1 retry a second over a 10 s window. Without it, 40 calls × 3 attempts = 120.
        await using var gateway = await GatewayServer.StartAsync(TestConfigs.Resilience(_mock.BaseUrl, _slowMock.BaseUrl, retryBudgetMinPerSecond: 1));
        var scenario = Guid.NewGuid().ToString("N");
        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "solo", content: $"storm {i}"), headers:
            [("X-Mock-Status", "429"), ("X-Mock-Scenario", scenario)]))));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.TooManyRequests, r.StatusCode));
        var attempts = Attempts(_mock, scenario).Count;
        Assert.InRange(attempts, 40, 40 + (int)(0.2 * 40) + 10);
    }

    [Fact]
    public async Task BudgetDowngrade_AtThreshold_ServesTheCheaperModel()
    {
        for (var i = 0; i < 5; i++)
        {
            using var spend = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "premium", content: $"spend {i}", extra: ",\"max_tokens\":10"), "sk-thrifty", ("X-Mock-Usage-Completion", "10")));
            Assert.Equal("premium", spend.Headers.GetValues("X-Gateway-Model").Single());
        }

        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "premium", content: "past half", extra: ",\"max_tokens\":10"), "sk-thrifty"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("mock-small", response.Headers.GetValues("X-Gateway-Model").Single());
        Assert.Equal("budget", response.Headers.GetValues("X-Gateway-Downgrade").Single());
        Assert.Equal("mock-small", _mock.Log.Snapshot().Last(r => r.Body.Contains("past half")).Model);
        Assert.Contains("llm_gateway_downgrades_total{from=\"premium\",reason=\"budget\",to=\"mock-small\"}", await _gateway.Client.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task BudgetDowngrade_WhenOnlyTheCheaperReservationFits_AndNoDowngradeHeaderRejectsInstead()
    {
        // pauper has $0.05: premium with max_tokens 10 reserves $0.10, mock-small $0.001.
        using var downgraded = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "premium", extra: ",\"max_tokens\":10"), "sk-pauper"));
        Assert.Equal(HttpStatusCode.OK, downgraded.StatusCode);
        Assert.Equal("mock-small", downgraded.Headers.GetValues("X-Gateway-Model").Single());
        Assert.Equal("budget", downgraded.Headers.GetValues("X-Gateway-Downgrade").Single());

        using var refused = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "premium", extra: ",\"max_tokens\":10"), "sk-pauper", ("X-Gateway-No-Downgrade", "true")));
        await Http.AssertErrorAsync(refused, 429, "budget_exceeded", shouldRetry: false);
    }

    [Fact]
    public async Task HangingProvider_DoesNotSlowAnotherProvider_AndItsBulkheadRefusesAtOnce()
    {
        var hanging = Enumerable.Range(0, 2).Select(i => _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "slow-model", content: $"hang {i}"), headers: ("X-Mock-Latency-Ms", "4000")))).ToArray();
        await Http.EventuallyAsync(() => _slowMock.Log.Count >= 2 ? _slowMock.Log : null, "both slow calls upstream");

        using var full = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "slow-model", content: "third")));
        await Http.AssertErrorAsync(full, 503, "upstream_unavailable", shouldRetry: true);
        Assert.Equal(2, _slowMock.Log.Count);

        using var other = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "solo", content: "not blocked")));
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        Assert.All(hanging, t => Assert.False(t.IsCompleted, "the slow calls finished before the other provider answered"));
        foreach (var response in await Task.WhenAll(hanging))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    private static List<DateTimeOffset> Attempts(MockLlmServer mock, string scenario) =>
        mock.Log.Snapshot().Where(r => r.Headers.TryGetValue("X-Mock-Scenario", out var s) && s == scenario).Select(r => r.ReceivedAt).ToList();
}
