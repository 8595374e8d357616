using System.Diagnostics;
using System.Globalization;
using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// Gateway:Store:WaitForReplicas against a real primary and its real replica on loopback. Redis replicates
/// asynchronously: a primary that dies before its replica has its last writes takes them with it, and the promoted
/// replica then holds less spend than the clients were told. With WaitForReplicas, a write the replica has not
/// acknowledged is not acted on: the call is refused (OnUnavailable: Deny) and what its script took is given back.
/// </summary>
[RequiresRedisServer]
public sealed class RedisReplicaWaitTests : IAsyncLifetime
{
    private const decimal CallUsd = 0.01m;
    private RedisServerFixture _primary = null!;
    private RedisServerFixture _replica = null!;
    private RedisServerFixture? _newReplica;
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _primary = new RedisServerFixture();
        _replica = new RedisServerFixture(["--replicaof", "127.0.0.1", Port(_primary)]);
        await Until.TrueAsync(() => _primary.TryCommand("WAIT 1 1000") == ":1", "the replica to follow the primary", 30);
    }

    public async Task DisposeAsync()
    {
        _newReplica?.Dispose();
        _replica?.Dispose();
        _primary?.Dispose();
        await _mock.DisposeAsync();
    }

    [RedisFact]
    public async Task WaitForReplicas_ReplicaStopsAcknowledging_CallsAreRefused_TheirHoldsGivenBack_AndCallsResumeWhenItIsBack()
    {
        await using var gateway = await GatewayServer.StartAsync(Config(waitForReplicas: 1, leases: false, budgetUsd: 0.05m));
        await gateway.WaitReadyAsync();
        Assert.Equal(HttpStatusCode.OK, await CallAsync(gateway, "first"));

        // The replica follows a primary that is not there: it keeps its data, acknowledges nothing more.
        Assert.Equal("+OK", _replica.TryCommand($"REPLICAOF 127.0.0.1 {RedisServerFixture.FreePort()}"));
        for (var i = 0; i < 4; i++)
        {
            using var refused = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"unacknowledged {i}"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Contains("store_unavailable", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // Operators see why: the replicas, not a slow or unreachable Redis. (Some show as timeouts: a WAIT blocks its
        // connection, so a call queued behind another's WAIT and a give-back's can run out of Store:Timeout first.)
        var metrics = (await gateway.Client.GetStringAsync("/metrics")).Split('\n').Where(line => line.StartsWith("llm_gateway_store_unavailable_total{", StringComparison.Ordinal)).ToArray();
        var replicas = metrics.Where(line => line.Contains("reason=\"replicas\",result=\"denied\"}", StringComparison.Ordinal)).Select(Value).SingleOrDefault();
        Assert.True(replicas >= 1, string.Join('\n', metrics));
        Assert.Equal(4, metrics.Sum(Value));

        Assert.Equal("+OK", _replica.TryCommand($"REPLICAOF 127.0.0.1 {Port(_primary)}"));
        await Until.TrueAsync(() => _primary.TryCommand("WAIT 1 1000") == ":1", "the replica to follow the primary again", 30);

        // The four refused calls hold nothing (held, they would have used up the $0.05 for 10 minutes): four more fit.
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 5; i++)
        {
            statuses.Add(await CallAsync(gateway, $"after {i}"));
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        var user = await BudgetCalls.SettledAsync(gateway.Client, "/admin/users/spender");
        Assert.Equal(5 * CallUsd, user.GetProperty("spent_usd").GetDecimal());
    }

    /// <summary>
    /// The replica stops following, two calls are made, the primary dies and the replica is promoted. Without waiting,
    /// the two calls' spend is lost: the promoted replica holds $0.02 less than the clients were told (this is what the
    /// test would catch). With WaitForReplicas the two calls are refused instead, and the spend carries over exactly.
    /// </summary>
    [RedisTheory]
    [InlineData(1, false)]
    [InlineData(1, true)]
    [InlineData(0, false)]
    public async Task PromotedReplicaThatMissedWrites_HoldsEverySpendTheClientsWereTold_OnlyWithWaitForReplicas(int waitForReplicas, bool leases)
    {
        await using var gateway = await GatewayServer.StartAsync(Config(waitForReplicas, leases, budgetUsd: 1m));
        await gateway.WaitReadyAsync();
        var told = 0m;
        for (var i = 0; i < 2; i++)
        {
            told += await CostAsync(gateway, $"before {i}", expectOk: true);
        }

        await BudgetCalls.SettledAsync(gateway.Client, "/admin/users/spender");
        await Until.TrueAsync(() => _primary.TryCommand("WAIT 1 1000") == ":1", "the replica to hold the primary's writes", 30);

        // The replica falls behind: from here the primary's writes reach no replica.
        Assert.Equal("+OK", _replica.TryCommand($"REPLICAOF 127.0.0.1 {RedisServerFixture.FreePort()}"));
        var lost = 0m;
        for (var i = 0; i < 2; i++)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"behind {i}"));
            if (waitForReplicas > 0)
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Contains("store_unavailable", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
            else
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                var cost = Cost(response);
                told += cost;
                lost += cost;
            }
        }

        // Fail-over: the replica is promoted, the primary dies, and the new primary gets a replica of its own.
        Assert.Equal("+OK", _replica.TryCommand("REPLICAOF NO ONE"));
        _primary.Stop();
        _newReplica = new RedisServerFixture(["--replicaof", "127.0.0.1", Port(_replica)]);
        await Until.TrueAsync(() => _replica.TryCommand("WAIT 1 1000") == ":1", "a replica to follow the promoted one", 30);

        var clock = Stopwatch.StartNew();
        while (true)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"after {clock.ElapsedMilliseconds}"));
            if (response.StatusCode == HttpStatusCode.OK)
            {
                told += Cost(response);
                break;
            }

            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the gateway did not follow the promoted replica within 60 s");
            await Task.Delay(100);
        }

        told += await CostAsync(gateway, "after the fail-over", expectOk: true);
        var spent = (await BudgetCalls.SettledAsync(gateway.Client, "/admin/users/spender")).GetProperty("spent_usd").GetDecimal();
        Assert.Equal(waitForReplicas > 0 ? 0m : 2 * CallUsd, lost);
        Assert.Equal(told - lost, spent);
    }

    private string Config(int waitForReplicas, bool leases, decimal budgetUsd) => $$"""
        {
          "Gateway": {
            "Redis": "127.0.0.1:{{Port(_primary)}},127.0.0.1:{{Port(_replica)}}",
            "AdminKey": "{{TestConfigs.AdminKey}}",
            "Store": { "OnUnavailable": "Deny", "Timeout": "00:00:00.5", "WaitForReplicas": {{waitForReplicas}}, "Leases": {{(leases ? "true" : "false")}},
                       "KeyPrefix": "llmgw-{{Guid.NewGuid().ToString("N")[..8]}}:" },
            "Providers": { "mock": { "BaseUrl": "{{_mock.BaseUrl}}/v1" } },
            "Models": { "metered": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DefaultMaxOutputTokens": 10 } },
            "Keys": [ { "Key": "sk-spender", "User": "spender" } ],
            "Users": { "spender": { "Budget": { "Usd": {{budgetUsd.ToString(CultureInfo.InvariantCulture)}}, "Period": "Day" } } }
          }
        }
        """;

    private static async Task<HttpStatusCode> CallAsync(GatewayServer gateway, string content)
    {
        using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: content));
        return response.StatusCode;
    }

    private static async Task<decimal> CostAsync(GatewayServer gateway, string content, bool expectOk)
    {
        using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: content));
        if (expectOk)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        return Cost(response);
    }

    private static decimal Cost(HttpResponseMessage response) =>
        decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture);

    private static double Value(string sample) => double.Parse(sample[(sample.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);

    private static string Port(RedisServerFixture server) => server.Port.ToString(CultureInfo.InvariantCulture);
}
