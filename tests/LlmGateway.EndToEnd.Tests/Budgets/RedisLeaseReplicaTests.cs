using System.Globalization;
using System.Net;
using System.Text.Json;
using LlmGateway.Budgets;
using LlmGateway.Budgets.Leases;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.DependencyInjection;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// Two gateways with <c>Gateway:Store:Leases</c> on one real redis-server (each host its own store and connection):
/// they share one budget without passing it, a halt on one reaches the other, and a run one of them owns (its exclusive
/// run block) is handed to the other with every cent its clients were told.
/// </summary>
[RequiresRedisServer]
public sealed class RedisLeaseReplicaTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private GatewayPair _pair = null!;

    public async Task InitializeAsync()
    {
        if (!redis.IsRunning)
        {
            redis.Start();
        }

        _pair = await GatewayPair.StartAsync(mock =>
        {
            var config = TestConfigs.Budgets(mock.BaseUrl, redis.ConnectionString, storeTimeout: "00:00:01")
                .Replace("\"Store\": { ", "\"Store\": { \"Leases\": true, ", StringComparison.Ordinal);
            Assert.Contains("\"Leases\": true", config, StringComparison.Ordinal);
            return config;
        });
    }

    public async Task DisposeAsync() => await _pair.DisposeAsync();

    [RedisFact]
    public async Task TwoReplicasWithLeases_ShareOneBudget_NeverPassIt()
    {
        // 200 calls of $0.01 at once against $1.00: never more than 100 admitted, and at least 90 (room held in the other
        // replica's open block at the very end is the price of leases).
        var responses = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => (i % 2 == 0 ? _pair.A.Client : _pair.B.Client).SendAsync(BudgetCalls.Metered("sk-spender", content: $"leased {i}"))));

        var admitted = responses.Count(r => r.StatusCode == HttpStatusCode.OK);
        Assert.InRange(admitted, 90, 100);
        Assert.Equal(200 - admitted, responses.Count(r => r.StatusCode == HttpStatusCode.TooManyRequests));

        // Each replica charges its blocks' calls when the blocks go back (at most a second after their last call).
        var spent = await Http.EventuallyAsync(async () =>
        {
            using var state = await _pair.A.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/users/spender"));
            var value = JsonDocument.Parse(await state.Content.ReadAsStringAsync()).RootElement.GetProperty("spent_usd").GetDecimal();
            return value == admitted * 0.01m ? value : (decimal?)null;
        }, "every replica's blocks charged", timeoutMs: 20000);
        Assert.True(spent <= 1.00m);
    }

    [RedisFact]
    public async Task HaltOnOneReplica_StopsTheUserOnTheOther()
    {
        using (var first = await _pair.B.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-runner")))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        (await _pair.A.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/users/runner/halt"))).EnsureSuccessStatusCode();

        // B holds a block for runner; the halt reaches it by pub/sub (or at the latest when the block's second ends).
        var status = await Http.EventuallyAsync(async () =>
        {
            using var call = await _pair.B.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-runner"));
            return call.StatusCode == HttpStatusCode.Forbidden ? call.StatusCode : (HttpStatusCode?)null;
        }, "the halt on replica B", timeoutMs: 20000);
        Assert.Equal(HttpStatusCode.Forbidden, status);
    }

    [RedisFact]
    public async Task RunOwnedByOneReplica_IsHandedToTheOther_AndItsSpendIsWhatTheClientsWereTold()
    {
        // An agent's calls go to A twelve times in a row: A claims the run after eight and decides the rest itself. Then
        // three go to B: B's first call asks A to let go (pub/sub), and is admitted once A wrote the run back. Spend =
        // the sum of the X-Gateway-Cost-Usd headers, over all fifteen calls.
        var a = (LeasedAdmissionStore)_pair.A.Services.GetRequiredService<IAdmissionStore>();
        var costs = 0m;
        for (var i = 0; i < 15; i++)
        {
            using var response = await (i < 12 ? _pair.A.Client : _pair.B.Client).SendAsync(BudgetCalls.Metered("sk-runner", runId: "run-owned", content: $"step {i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            costs += decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture);
            if (i == 11)
            {
                Assert.True(a.OwnsRun("run-owned"), $"A never claimed the run: {a.RunBlockCounts}");
                Assert.True(a.RunBlockCounts.LocalDecisions > 0);
            }
        }

        Assert.False(a.OwnsRun("run-owned"));
        var metrics = await _pair.A.Client.GetStringAsync("/metrics");
        Assert.Contains("llm_gateway_run_blocks_total{event=\"claimed\"}", metrics, StringComparison.Ordinal);
        Assert.Contains("llm_gateway_run_blocks_total{event=\"released\"}", metrics, StringComparison.Ordinal);
        var run = await BudgetCalls.SettledAsync(_pair.B.Client, "/admin/runs/run-owned");
        Assert.Equal(costs, run.GetProperty("spent_usd").GetDecimal());
        Assert.Equal(15, run.GetProperty("calls").GetInt32());
    }

    [RedisFact]
    public async Task HaltOnOneReplica_StopsARunTheOtherOwns()
    {
        var a = (LeasedAdmissionStore)_pair.A.Services.GetRequiredService<IAdmissionStore>();
        for (var i = 0; i < 10; i++)
        {
            using var response = await _pair.A.Client.SendAsync(BudgetCalls.Metered("sk-runner", runId: "run-halt-owned", content: $"step {i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.True(a.OwnsRun("run-halt-owned"), $"A never claimed the run: {a.RunBlockCounts}");
        (await _pair.B.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/run-halt-owned/halt"))).EnsureSuccessStatusCode();

        // The halt's message makes A let go; its next call of the run is refused (event-driven: no time is measured).
        await Http.EventuallyAsync(() => a.OwnsRun("run-halt-owned") ? null : "let go", "A to let go of the halted run", timeoutMs: 5000);
        using var refused = await _pair.A.Client.SendAsync(BudgetCalls.Metered("sk-runner", runId: "run-halt-owned", content: "after the halt"));
        await Http.AssertErrorAsync(refused, 403, "run_halted", shouldRetry: false);
    }
}
