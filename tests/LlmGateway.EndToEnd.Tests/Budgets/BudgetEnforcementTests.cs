using System.Globalization;
using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// Budgets, rate limits and run control through the gateway, with the in-memory store (and, in
/// <see cref="LeasedBudgetEnforcementTests"/>, with leases on a real redis-server: the same answers).
/// </summary>
public class BudgetEnforcementTests : GatewayTestBase
{
    protected override string Config(string mockBaseUrl) => TestConfigs.Budgets(mockBaseUrl);

    /// <summary>
    /// Whether a concurrent burst admits exactly what fits. With leases a replica may refuse a few calls that fit while
    /// their room sits in a block another call's grant just took (never more than fits: the price of leases).
    /// </summary>
    protected virtual bool ExactUnderBursts => true;

    [Fact]
    public async Task ConcurrentRequests_AgainstOneDollar_SettleToAtMostOneDollar_AndAdmitExactlyWhatFits()
    {
        // Each call reserves and costs exactly $0.01: 100 fit in $1.00.
        var responses = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => Gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"call {i}"))));

        var admitted = responses.Where(r => r.StatusCode == HttpStatusCode.OK).ToArray();
        var charged = admitted.Sum(r => decimal.Parse(r.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture));
        if (ExactUnderBursts)
        {
            Assert.Equal(100, admitted.Length);
        }
        else
        {
            Assert.InRange(admitted.Length, 90, 100);
        }

        Assert.Equal(admitted.Length * 0.01m, charged);
        foreach (var rejected in responses.Where(r => r.StatusCode != HttpStatusCode.OK))
        {
            await Http.AssertErrorAsync(rejected, 429, "budget_exceeded", shouldRetry: false);
        }

        // A call is settled after its answer reached the client: wait until nothing is reserved any more, then the
        // spend must be exactly what the clients were told.
        var user = await Http.EventuallyAsync<JsonElement>(async () =>
        {
            var state = await AdminJson("/admin/users/spender");
            return state.GetProperty("reserved_usd").GetDecimal() == 0m ? state : null;
        }, "the user's reservations to be settled");
        Assert.Equal(charged, user.GetProperty("spent_usd").GetDecimal());
        Assert.Equal(admitted.Length, Mock.Log.Snapshot().Count(r => r.Model == "metered" && r.Headers.ContainsKey("X-Mock-Usage-Completion")));
    }

    [Fact]
    public async Task BudgetRejection_SaysWhichLimit_AndWhenItResets()
    {
        using var tooBig = await Gateway.Client.SendAsync(BudgetCalls.Metered("sk-free", tokens: 10));

        await Http.AssertErrorAsync(tooBig, 429, "budget_exceeded", shouldRetry: false);
        var message = (await Http.ErrorOf(tooBig)).GetProperty("message").GetString()!;
        Assert.Contains("user 'free-user'", message);
        Assert.Contains("resets in", message);
        Assert.True(tooBig.Headers.RetryAfter is not null);
    }

    [Fact]
    public async Task PerRequestCeiling_RejectsBeforeAnyUpstreamCall()
    {
        var before = Mock.Log.Count;

        using var response = await Gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", tokens: 1000));

        await Http.AssertErrorAsync(response, 429, "budget_exceeded", shouldRetry: false);
        Assert.Contains("per-request ceiling", (await Http.ErrorOf(response)).GetProperty("message").GetString());
        Assert.Equal(before, Mock.Log.Count);
    }

    [Fact]
    public async Task ContextGuard_RejectsPromptLargerThanTheModelWindow()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "tiny-context", content: new string('a', 400)), "sk-spender"));

        await Http.AssertErrorAsync(response, 400, "context_length_exceeded", shouldRetry: false);
    }

    [Fact]
    public async Task RunInputCap_RejectsLargePromptInARun()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: new string('b', 2000)), "sk-runner", ("X-Run-Id", "run-input-cap")));

        await Http.AssertErrorAsync(response, 400, "context_length_exceeded", shouldRetry: false);
        Assert.Contains("input cap", (await Http.ErrorOf(response)).GetProperty("message").GetString());
    }

    [Fact]
    public async Task RunCallsCeiling_RejectsTheFourthCall()
    {
        for (var i = 0; i < 3; i++)
        {
            using var ok = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: $"step {i}"), "sk-calls", ("X-Run-Id", "run-calls")));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using var fourth = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "step 4"), "sk-calls", ("X-Run-Id", "run-calls")));

        await Http.AssertErrorAsync(fourth, 429, "budget_exceeded", shouldRetry: false);
        Assert.Contains("3 calls", (await Http.ErrorOf(fourth)).GetProperty("message").GetString());
        using var otherRun = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-calls", ("X-Run-Id", "run-calls-2")));
        Assert.Equal(HttpStatusCode.OK, otherRun.StatusCode);
    }

    [Fact]
    public async Task RunDeadline_RejectsCallsAfterItPasses()
    {
        using (var first = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "first"), "sk-deadline", ("X-Run-Id", "run-deadline"))))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        // The deadline (1 s from the run's first call) is a property of the run, so the wait is part of the scenario.
        await Task.Delay(1200);
        using var late = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "late"), "sk-deadline", ("X-Run-Id", "run-deadline")));

        await Http.AssertErrorAsync(late, 429, "run_deadline_exceeded", shouldRetry: false);
        using var newRun = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "fresh"), "sk-deadline", ("X-Run-Id", "run-deadline-2")));
        Assert.Equal(HttpStatusCode.OK, newRun.StatusCode);
    }

    [Fact]
    public async Task LoopGuard_RejectsTheSameRequestRepeatedTooOften()
    {
        for (var i = 0; i < 2; i++)
        {
            using var ok = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "same again"), "sk-loop", ("X-Run-Id", "run-loop")));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using var third = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "same again"), "sk-loop", ("X-Run-Id", "run-loop")));
        await Http.AssertErrorAsync(third, 429, "loop_detected", shouldRetry: false);

        using var different = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "something new"), "sk-loop", ("X-Run-Id", "run-loop")));
        Assert.Equal(HttpStatusCode.OK, different.StatusCode);
    }

    [Fact]
    public async Task InFlightCap_RejectsConcurrentCallWithShortRetryAfter()
    {
        var slow = Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "slow one"), "sk-inflight", ("X-Mock-Latency-Ms", "1500")));
        await Http.EventuallyAsync(() => Mock.Log.Snapshot().LastOrDefault(r => r.Body.Contains("slow one")), "the slow call upstream");

        using var second = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "second"), "sk-inflight"));

        await Http.AssertErrorAsync(second, 429, "rate_limit_exceeded", shouldRetry: true);
        Assert.True(second.Headers.RetryAfter?.Delta is { } delay && delay <= TimeSpan.FromSeconds(5));
        using var first = await slow;
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        using var after = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "after"), "sk-inflight"));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task RateLimitRemainingTokens_DecreasesByTheTokensUsed()
    {
        using var first = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "tokens one"), "sk-tpm"));
        using var second = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "tokens one"), "sk-tpm"));

        var r1 = long.Parse(first.Headers.GetValues("x-ratelimit-remaining-tokens").Single(), CultureInfo.InvariantCulture);
        var r2 = long.Parse(second.Headers.GetValues("x-ratelimit-remaining-tokens").Single(), CultureInfo.InvariantCulture);
        using var firstBody = JsonDocument.Parse(await first.Content.ReadAsStringAsync());
        var used = firstBody.RootElement.GetProperty("usage").GetProperty("total_tokens").GetInt64();
        Assert.Equal("100000", first.Headers.GetValues("x-ratelimit-limit-tokens").Single());
        Assert.Equal(used, r1 - r2);
        Assert.True(first.Headers.Contains("x-ratelimit-reset-tokens"));
    }

    [Fact]
    public async Task RateLimit_RpmExceeded_Gets429WithRetryAfter_AndRemainingRequestsCountsDown()
    {
        var remaining = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            using var ok = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: $"rpm {i}"), "sk-rpm"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            remaining.Add(ok.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }

        using var sixth = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "rpm 6"), "sk-rpm"));

        Assert.Equal(["4", "3", "2", "1", "0"], remaining);
        await Http.AssertErrorAsync(sixth, 429, "rate_limit_exceeded", shouldRetry: true);
        Assert.True(sixth.Headers.RetryAfter?.Delta > TimeSpan.Zero);
    }

    [Fact]
    public async Task StreamedRequest_IsReservedBeforeFirstByte_AndSettledAfterLast()
    {
        var request = BudgetCalls.Metered("sk-runner", tokens: 6, runId: "run-stream", content: "one two three four five six", stream: true);
        request.Headers.Add("X-Mock-Chunk-Delay-Ms", "250");
        using var response = await Gateway.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line && !line.Contains("\"content\":\"Mock\"", StringComparison.Ordinal))
        {
        }

        var during = await AdminJson("/admin/runs/run-stream");
        Assert.Equal(0.006m, during.GetProperty("reserved_usd").GetDecimal());
        Assert.Equal(1, during.GetProperty("in_flight").GetInt32());
        Assert.Equal(0m, during.GetProperty("spent_usd").GetDecimal());

        await reader.ReadToEndAsync();
        var after = await Http.EventuallyAsync(async () => await AdminJsonOrNull("/admin/runs/run-stream", s => s.GetProperty("in_flight").GetInt32() == 0), "settlement");
        Assert.Equal(0m, after.GetProperty("reserved_usd").GetDecimal());
        Assert.Equal(0.006m, after.GetProperty("spent_usd").GetDecimal());
        Assert.Equal(1, after.GetProperty("calls").GetInt32());
    }

    [Fact]
    public async Task StreamCutByClient_IsSettledForWhatItReceived()
    {
        var request = Http.Post("/v1/chat/completions", Http.Chat(content: "a b c d e f g h i j k l", stream: true), "sk-runner", [("X-Run-Id", "run-cut"), ("X-Mock-Chunk-Delay-Ms", "200")]);
        using (var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = new Uri(Gateway.BaseUrl) })
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        using (var reader = new StreamReader(await response.Content.ReadAsStreamAsync()))
        {
            while (await reader.ReadLineAsync() is { } line && !line.Contains("\"content\":\" b\"", StringComparison.Ordinal))
            {
            }
        }

        var state = await Http.EventuallyAsync(async () => await AdminJsonOrNull("/admin/runs/run-cut", s => s.GetProperty("in_flight").GetInt32() == 0), "settlement of the cut stream");
        Assert.True(state.GetProperty("spent_usd").GetDecimal() > 0);
        Assert.Equal(0m, state.GetProperty("reserved_usd").GetDecimal());
    }

    [Fact]
    public async Task HaltedRun_Gets403RunHalted_UntilResumed()
    {
        using (var ok = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "before halt"), "sk-runner", ("X-Run-Id", "run-halt"))))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        (await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/run-halt/halt"))).EnsureSuccessStatusCode();
        using var halted = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "after halt"), "sk-runner", ("X-Run-Id", "run-halt")));
        await Http.AssertErrorAsync(halted, 403, "run_halted", shouldRetry: false);
        Assert.True((await AdminJson("/admin/runs/run-halt")).GetProperty("halted").GetBoolean());

        (await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/run-halt/resume"))).EnsureSuccessStatusCode();
        using var resumed = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "after resume"), "sk-runner", ("X-Run-Id", "run-halt")));
        Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
    }

    [Fact]
    public async Task HaltedUser_Gets403UserHalted()
    {
        (await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/users/calls-user/halt"))).EnsureSuccessStatusCode();
        using var halted = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-calls"));
        await Http.AssertErrorAsync(halted, 403, "user_halted", shouldRetry: false);
        (await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/users/calls-user/resume"))).EnsureSuccessStatusCode();
    }

    [Fact]
    public async Task AdminApi_WithoutTheAdminKey_Is401()
    {
        using var response = await Gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/admin/runs/x/halt"));

        await Http.AssertErrorAsync(response, 401, "invalid_api_key", shouldRetry: false);
    }

    private async Task<JsonElement> AdminJson(string path)
    {
        using var response = await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, path));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private async Task<JsonElement?> AdminJsonOrNull(string path, Func<JsonElement, bool> until)
    {
        var json = await AdminJson(path);
        return until(json) ? json : null;
    }
}
