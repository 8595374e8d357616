using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// Gateways on a real 3-master Redis Cluster serving LLM calls with budgets: replica A is given every node, replica B
/// one node only (as a managed cluster's single configuration endpoint); each finds the others itself. Every scope
/// lives in one hash slot, so no call fails CROSSSLOT, and the two replicas enforce one set of limits.
/// </summary>
[RequiresRedisServer]
public sealed class RedisClusterGatewayTests(RedisClusterFixture cluster) : IClassFixture<RedisClusterFixture>, IAsyncLifetime
{
    private GatewayPair _pair = null!;

    public async Task InitializeAsync()
    {
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";

        // Same limits and key prefix on both, one with every node listed and one with a single node.
        _pair = await GatewayPair.StartAsync(mock => (Config(mock, cluster.ConnectionString, prefix), Config(mock, cluster.SingleNodeConnectionString, prefix)));
    }

    public async Task DisposeAsync() => await _pair.DisposeAsync();

    [RedisFact]
    public async Task TwoReplicas_ShareOneBudget_ConcurrentlyAdmitExactlyWhatFits()
    {
        var responses = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => (i % 2 == 0 ? _pair.A.Client : _pair.B.Client).SendAsync(BudgetCalls.Metered("sk-spender", content: $"shared {i}"))));

        Assert.Equal(100, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(100, responses.Count(r => r.StatusCode == HttpStatusCode.TooManyRequests));
        var spender = await BudgetCalls.SettledAsync(_pair.B.Client, "/admin/users/spender");
        Assert.Equal(1.00m, spender.GetProperty("spent_usd").GetDecimal());
    }

    [RedisFact]
    public async Task RunsTeamsAndKeys_OnSeveralNodes_AreChargedAndHalted()
    {
        // A call of a user in a team, on a run, with a key rate limit: four scopes, spread over the nodes.
        for (var i = 0; i < 3; i++)
        {
            using var response = await (i % 2 == 0 ? _pair.A.Client : _pair.B.Client).SendAsync(BudgetCalls.Metered("sk-member", runId: "run-c", content: $"run call {i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var state = await BudgetCalls.SettledAsync(_pair.A.Client, "/admin/runs/run-c");
        Assert.Equal(0.03m, state.GetProperty("spent_usd").GetDecimal());

        (await _pair.A.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/run-c/halt"))).EnsureSuccessStatusCode();
        using var onB = await _pair.B.Client.SendAsync(BudgetCalls.Metered("sk-member", runId: "run-c"));
        await Http.AssertErrorAsync(onB, 403, "run_halted", shouldRetry: false);

        // The key allows 5 calls a minute across both replicas: 3 were made, 1 was refused by the halt.
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            using var response = await (i % 2 == 0 ? _pair.A.Client : _pair.B.Client).SendAsync(BudgetCalls.Metered("sk-member", content: $"rate {i}"));
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests, HttpStatusCode.TooManyRequests], statuses);
    }

    [RedisFact]
    public async Task WaitForReplicas_OnMastersWithoutReplicas_RefusesEveryCall_AndItsScopesOnEveryNodeHoldNothing()
    {
        // Every slot's primary answers WAIT with 0 replicas: nothing a call's scripts wrote may be acted on. The call's
        // user, team, run and key scopes are on different nodes; each step that held is given back.
        // Left out: the key's rate window, given back the same way but not readable from the admin API.
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";
        await using var waiting = await GatewayServer.StartAsync(Config(_pair.Mock, cluster.ConnectionString, prefix, storeTimeout: "00:00:00.3", waitForReplicas: 1));
        await using var plain = await GatewayServer.StartAsync(Config(_pair.Mock, cluster.ConnectionString, prefix));
        var waitsBefore = WaitCommands();
        for (var i = 0; i < 3; i++)
        {
            using var refused = await waiting.Client.SendAsync(BudgetCalls.Metered("sk-member", runId: "run-w", content: $"unacknowledged {i}"));
            await Http.AssertErrorAsync(refused, 503, "store_unavailable", shouldRetry: true);
        }

        // The give-backs follow the refusals, each node's once the WAITs queued before it on that node's connection have
        // timed out: the user's and the run's holds (on different nodes) are given back within seconds, not their TTL.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!await NothingHeldAsync(plain, "/admin/users/member") || !await NothingHeldAsync(plain, "/admin/runs/run-w"))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "the refused calls' holds were not given back within 10 s");
            await Task.Delay(50);
        }

        // One WAIT per node a batch went to, not one per script: a WAIT blocks its connection, so a script behind another's
        // WAIT on the same node would wait it out first. Per call: the admission's 4 scope steps (user, team, run, key) on
        // at most 3 nodes, then the 4 steps' give-backs, one script each. One WAIT per script would make 3 × 8.
        await Until.TrueAsync(() => cluster.OnEveryNode("INFO clients").All(info => info?.Contains("blocked_clients:0", StringComparison.Ordinal) == true), "every WAIT to finish", 10);
        Assert.InRange(WaitCommands() - waitsBefore, 3 * (1 + 4), 3 * (3 + 4));

        // Nothing was spent; the replica that does not wait goes on.
        using (var admitted = await plain.Client.SendAsync(BudgetCalls.Metered("sk-member", runId: "run-w", content: "after")))
        {
            Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
        }

        var run = await BudgetCalls.SettledAsync(plain.Client, "/admin/runs/run-w");
        Assert.Equal(0.01m, run.GetProperty("spent_usd").GetDecimal());
        var member = await BudgetCalls.SettledAsync(plain.Client, "/admin/users/member");
        Assert.Equal(0.01m, member.GetProperty("spent_usd").GetDecimal());
    }

    /// <summary>WAIT commands the cluster's nodes have run so far.</summary>
    private long WaitCommands() => cluster.OnEveryNode("INFO commandstats")
        .Sum(stats => System.Text.RegularExpressions.Regex.Match(stats ?? "", @"cmdstat_wait:calls=(\d+)") is { Success: true } found ? long.Parse(found.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0);

    /// <summary>Whether a user or run holds nothing (a run never admitted is unknown: 404).</summary>
    private static async Task<bool> NothingHeldAsync(GatewayServer gateway, string path)
    {
        using var response = await gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, path));
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            return true;
        }

        response.EnsureSuccessStatusCode();
        var state = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        return state.GetProperty("reserved_usd").GetDecimal() == 0 && state.GetProperty("in_flight").GetInt64() == 0;
    }

    [RedisFact]
    public async Task FreshReplicas_FortyCallBurst_GetsNo503()
    {
        // Scripts gone from every node, two replicas just started: the warm-up loads the scripts before /readyz says
        // ready, and a call's store timeout counts from when its batch is sent, not while it queues behind another.
        cluster.OnEveryNode("SCRIPT FLUSH");
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";
        await using var c = await GatewayServer.StartAsync(Config(_pair.Mock, cluster.ConnectionString, prefix, keyRpm: 100));
        await using var d = await GatewayServer.StartAsync(Config(_pair.Mock, cluster.SingleNodeConnectionString, prefix, keyRpm: 100));
        await c.WaitReadyAsync();
        await d.WaitReadyAsync();

        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => (i % 2 == 0 ? c.Client : d.Client).SendAsync(BudgetCalls.Metered("sk-member", content: $"burst {i}", runId: "run-burst-" + (i % 4)))));

        Assert.DoesNotContain(responses, r => r.StatusCode == HttpStatusCode.ServiceUnavailable);
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
    }

    private static string Config(MockLlmServer mock, string redis, string prefix, string storeTimeout = "00:00:01", int keyRpm = 5, int waitForReplicas = 0) => $$"""
    {
      "Gateway": {
        "Redis": "{{redis}}",
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Store": { "OnUnavailable": "Deny", "Timeout": "{{storeTimeout}}", "KeyPrefix": "{{prefix}}", "WaitForReplicas": {{waitForReplicas}} },
        "Providers": { "mock": { "BaseUrl": "{{mock.BaseUrl}}/v1" } },
        "Models": { "metered": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DefaultMaxOutputTokens": 10 } },
        "Keys": [
          { "Key": "sk-spender", "User": "spender" },
          { "Key": "sk-member", "User": "member", "Rpm": {{keyRpm}} }
        ],
        "Users": {
          "spender": { "Budget": { "Usd": 1.0, "Period": "Day" } },
          "member": { "Team": "crew", "Budget": { "Usd": 5.0, "Period": "Day" }, "Runs": { "Usd": 1.0 } }
        },
        "Teams": { "crew": { "Budget": { "Usd": 50.0, "Period": "Month" } } }
      }
    }
    """;
}
