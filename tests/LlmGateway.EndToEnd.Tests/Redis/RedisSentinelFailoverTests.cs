using System.Diagnostics;
using System.Globalization;
using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// A Sentinel fail-over under a running gateway: a real primary, its real replica and a real
/// <c>redis-server --sentinel</c> on loopback. The primary is killed; the Sentinel promotes the replica; the gateway,
/// given only the Sentinel's address, follows it without a restart, and the budget carries over exactly.
/// </summary>
[RequiresRedisServer]
public sealed class RedisSentinelFailoverTests : IAsyncLifetime
{
    private const decimal CallUsd = 0.01m;
    private RedisServerFixture _primary = null!;
    private RedisServerFixture _replica = null!;
    private SentinelProcess _sentinel = null!;
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _primary = new RedisServerFixture();
        _replica = new RedisServerFixture(["--replicaof", "127.0.0.1", _primary.Port.ToString(CultureInfo.InvariantCulture)]);
        _sentinel = await SentinelProcess.StartAsync(_primary.Port, downAfterMs: 1000);

        // The Sentinel learns the replica from the primary's INFO (every 10 s): wait until it knows it.
        var replicaPort = _replica.Port.ToString(CultureInfo.InvariantCulture);
        await _sentinel.WaitUntilAsync(() => _sentinel.Command("SENTINEL replicas mymaster")?.Contains(replicaPort, StringComparison.Ordinal) == true, "the Sentinel to know the replica", 40);
    }

    public async Task DisposeAsync()
    {
        await _sentinel.DisposeAsync();
        _replica?.Dispose();
        _primary?.Dispose();
        await _mock.DisposeAsync();
    }

    [RedisFact]
    public async Task PrimaryKilled_SentinelPromotesTheReplica_GatewayFollowsWithoutRestart_AndTheBudgetCarriesOverExactly()
    {
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";
        await using var gateway = await GatewayServer.StartAsync(_sentinel.GatewayConfig(_mock.BaseUrl, prefix, 0.05m));
        await gateway.WaitReadyAsync();

        var told = 0m;
        for (var i = 0; i < 2; i++)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"before {i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            told += Cost(response);
        }

        // Wait until the settled spend is on the replica too (asynchronous replication), then kill the primary.
        await BudgetCalls.SettledAsync(gateway.Client, "/admin/users/spender");
        await _sentinel.WaitUntilAsync(() => _primary.TryCommand("WAIT 1 1000") == ":1", "the replica to acknowledge the primary's writes", 30);
        _primary.Stop();

        // Until the Sentinel promotes the replica and the gateway follows, calls are refused (Deny), never let through
        // unaccounted; then they are admitted against the spend the promoted replica holds.
        var clock = Stopwatch.StartNew();
        while (true)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"during {clock.ElapsedMilliseconds}"));
            if (response.StatusCode == HttpStatusCode.OK)
            {
                told += Cost(response);
                break;
            }

            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Contains("store_unavailable", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the gateway did not follow the promoted replica within 60 s");
            await Task.Delay(100);
        }

        // The replica answered as primary (the Sentinel promoted it); the Sentinel names it once its fail-over completes.
        await _sentinel.WaitUntilAsync(() => _sentinel.NamesPrimary(_replica.Port), "the Sentinel to name the promoted replica", 30);

        // The budget of $0.05 carried over: two more calls fit, the next is refused.
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"after {i}"));
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                told += Cost(response);
            }
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        var spent = (await BudgetCalls.SettledAsync(gateway.Client, "/admin/users/spender")).GetProperty("spent_usd").GetDecimal();
        Assert.Equal(5 * CallUsd, told);
        Assert.Equal(told, spent);
    }

    private static decimal Cost(HttpResponseMessage response) =>
        decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture);
}
