using System.Globalization;
using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using Xunit.Abstractions;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// The scale-out targets as tests, on gateway replicas that share nothing but Redis (each its own Kestrel host, DI
/// container and connection): a 200-call burst spread over the replicas never passes a user budget and admits at least
/// 90 % of what fits; an RPM limit of 60 admits exactly 60 across all replicas; a halt on one replica stops the next
/// call on every replica. Four replicas on one Redis, two on the 3-master cluster.
/// </summary>
public abstract class RedisReplicaTargetTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const decimal Budget = 0.50m;
    private readonly List<GatewayServer> _replicas = [];
    private MockLlmServer _mock = null!;

    /// <summary>One connection string per replica (the cluster's: every node, or one).</summary>
    protected abstract string[] Connections { get; }

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";
        foreach (var connection in Connections)
        {
            _replicas.Add(await GatewayServer.StartAsync(Config(connection, prefix)));
        }

        foreach (var replica in _replicas)
        {
            await replica.WaitReadyAsync();
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var replica in _replicas)
        {
            await replica.DisposeAsync();
        }

        await _mock.DisposeAsync();
    }

    [RedisFact]
    public async Task Burst_OverEveryReplica_NeverPassesTheBudget_AndAdmitsAtLeastNinetyPercentOfWhatFits()
    {
        // 200 calls at once, round-robin over the replicas, each reserving and costing 1–10 tokens × $0.001: $1.10 is
        // asked of a $0.50 budget. What fits: the same calls one at a time in order (each admitted while it fits).
        var random = new Random(20261203);
        var tokens = Enumerable.Range(0, 200).Select(_ => random.Next(1, 11)).ToArray();
        var fits = 0m;
        foreach (var t in tokens)
        {
            fits += fits + (t * 0.001m) <= Budget ? t * 0.001m : 0;
        }

        var responses = await Task.WhenAll(tokens.Select((t, i) => _replicas[i % _replicas.Count].Client.SendAsync(BudgetCalls.Metered("sk-burst", tokens: t, content: $"burst {i}"))));

        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
        var told = tokens.Where((_, i) => responses[i].StatusCode == HttpStatusCode.OK).Sum(t => t * 0.001m);
        var spent = await SettledSpendAsync("burster");
        output.WriteLine($"{_replicas.Count} replicas: admitted {responses.Count(r => r.StatusCode == HttpStatusCode.OK)}/200, spent {spent} of {fits} that fits, budget {Budget}");
        Assert.Equal(told, spent);
        Assert.True(spent <= Budget, $"spent {spent} > {Budget}");
        Assert.True(spent >= fits * 0.9m, $"admitted {spent} of the {fits} that fits");
    }

    [RedisFact]
    public async Task RequestsPerMinute_OfSixty_AdmitsExactlySixty_AcrossEveryReplica()
    {
        // 100 calls at once over every replica, within a second or two: the window (61 s) holds them all, so exactly
        // the limit is admitted, whichever replica each went to. No clock is read: the count is what is checked.
        var responses = await Task.WhenAll(Enumerable.Range(0, 100).Select(i => _replicas[i % _replicas.Count].Client.SendAsync(BudgetCalls.Metered("sk-paced", tokens: 1, content: $"paced {i}"))));

        Assert.Equal(60, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        foreach (var refused in responses.Where(r => r.StatusCode != HttpStatusCode.OK))
        {
            await Http.AssertErrorAsync(refused, 429, "rate_limit_exceeded", shouldRetry: true);
        }
    }

    [RedisFact]
    public async Task Halt_OnOneReplica_StopsTheNextCallOnEveryReplica()
    {
        foreach (var replica in _replicas)
        {
            using var before = await replica.Client.SendAsync(BudgetCalls.Metered("sk-member", runId: "run-h"));
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }

        (await _replicas[0].Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/run-h/halt"))).EnsureSuccessStatusCode();
        (await _replicas[^1].Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/users/halter/halt"))).EnsureSuccessStatusCode();

        foreach (var replica in _replicas)
        {
            using var run = await replica.Client.SendAsync(BudgetCalls.Metered("sk-member", runId: "run-h"));
            await Http.AssertErrorAsync(run, 403, "run_halted", shouldRetry: false);
            using var user = await replica.Client.SendAsync(BudgetCalls.Metered("sk-halter"));
            await Http.AssertErrorAsync(user, 403, "user_halted", shouldRetry: false);
            using var other = await replica.Client.SendAsync(BudgetCalls.Metered("sk-member", runId: "run-other"));
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        }

        (await _replicas[^1].Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/run-h/resume"))).EnsureSuccessStatusCode();
        foreach (var replica in _replicas)
        {
            using var resumed = await replica.Client.SendAsync(BudgetCalls.Metered("sk-member", runId: "run-h"));
            Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
        }
    }

    /// <summary>The user's spend once nothing of theirs is reserved (a call is settled after its answer reached the client).</summary>
    private Task<decimal> SettledSpendAsync(string user) => Http.EventuallyAsync(async () =>
    {
        using var response = await _replicas[0].Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/users/" + user));
        var state = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        return state.GetProperty("reserved_usd").GetDecimal() == 0 && state.GetProperty("in_flight").GetInt32() == 0
            ? (decimal?)state.GetProperty("spent_usd").GetDecimal()
            : null;
    }, "settlements", timeoutMs: 30000);

    private string Config(string redis, string prefix) => $$"""
    {
      "Gateway": {
        "Redis": "{{redis}}",
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Store": { "OnUnavailable": "Deny", "Timeout": "00:00:02", "KeyPrefix": "{{prefix}}" },
        "Providers": { "mock": { "BaseUrl": "{{_mock.BaseUrl}}/v1" } },
        "Models": { "metered": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DefaultMaxOutputTokens": 10 } },
        "Keys": [
          { "Key": "sk-burst", "User": "burster" },
          { "Key": "sk-paced", "User": "pacer" },
          { "Key": "sk-member", "User": "member" },
          { "Key": "sk-halter", "User": "halter" }
        ],
        "Users": {
          "burster": { "Budget": { "Usd": {{Budget.ToString(CultureInfo.InvariantCulture)}}, "Period": "Day" } },
          "pacer": { "Rpm": 60, "Budget": { "Usd": 100.0, "Period": "Day" } },
          "member": { "Team": "crew", "Budget": { "Usd": 5.0, "Period": "Day" }, "Runs": { "Usd": 1.0 } },
          "halter": { "Budget": { "Usd": 5.0, "Period": "Day" } }
        },
        "Teams": { "crew": { "Budget": { "Usd": 50.0, "Period": "Month" } } }
      }
    }
    """;
}

[RequiresRedisServer]
public sealed class RedisFourReplicaTargetTests(RedisServerFixture redis, ITestOutputHelper output)
    : RedisReplicaTargetTests(output), IClassFixture<RedisServerFixture>
{
    protected override string[] Connections => [.. Enumerable.Repeat(redis.ConnectionString, 4)];
}

[RequiresRedisServer]
public sealed class RedisClusterTwoReplicaTargetTests(RedisClusterFixture cluster, ITestOutputHelper output)
    : RedisReplicaTargetTests(output), IClassFixture<RedisClusterFixture>
{
    protected override string[] Connections => [cluster.ConnectionString, cluster.SingleNodeConnectionString];
}
