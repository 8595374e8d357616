using System.Diagnostics;
using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// Settlements Redis did not confirm are retried, and charged exactly once: those that ran although their reply was
/// lost (Redis paused with CLIENT PAUSE: the client times out, the script runs when the pause ends) are not charged
/// again by their retry, and those that never ran (the paused connection killed with its queued scripts) are charged
/// by it once Redis answers. Every scope is involved: user, team, run and the key's rate window (on a cluster, four
/// slots on three nodes, each marked on its own).
/// </summary>
public abstract class RedisSettlementRetryTests(ITestOutputHelper output) : RedisPausingTests
{
    [RedisFact]
    public async Task SettlementsLostOrUnconfirmedWhileRedisIsAway_AreChargedExactlyOnce()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero));
        var options = new AdmissionStoreOptions { KeyPrefix = "retry-" + Guid.NewGuid().ToString("N")[..12] + ":", OperationTimeout = TimeSpan.FromMilliseconds(300) };
        var store = new RedisAdmissionStore(ConnectionString, options, time) { FinishRetryInterval = TimeSpan.FromMilliseconds(200) };
        Track(store);
        await store.LoadScriptsAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var request = new AdmissionRequest
        {
            User = "alice",
            UserBudget = new BudgetLimits(100m, 0, 0),
            Team = "sales",
            TeamBudget = new BudgetLimits(100m, 0, 0),
            RunId = "run-1",
            RunBudget = new BudgetLimits(100m, 0, 0),
            KeyId = "key-1",
            KeyRateLimits = new RateLimits(1000, 1_000_000),
            ReserveUsd = 0.10m,
            ReserveTokens = 1000,
            ReservationTtl = TimeSpan.FromMinutes(10),
        };
        var held = new List<Reservation>();
        for (var i = 0; i < 30; i++)
        {
            held.Add((await store.ReserveAsync(request)).Reservation!);
        }

        // Told to the clients: call i cost 0.001 × (i + 1) USD and 10 × (i + 1) tokens; calls 0–9 settled normally.
        static decimal Cost(int i) => 0.001m * (i + 1);
        for (var i = 0; i < 10; i++)
        {
            await store.SettleAsync(held[i], Cost(i), 10 * (i + 1));
        }

        // Calls 10–19: Redis paused; the settlements time out, then run when the pause ends (their replies lost).
        Assert.All(OnEveryNode("CLIENT PAUSE 20000 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        await SettleUnconfirmedAsync(store, held, 10, 20, Cost);
        Assert.All(OnEveryNode("CLIENT UNPAUSE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));

        // Calls 20–29: paused again, and the connection killed with the scripts it had sent: they never run.
        Assert.All(OnEveryNode("CLIENT PAUSE 20000 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        await SettleUnconfirmedAsync(store, held, 20, 30, Cost);
        OnEveryNode("CLIENT KILL TYPE normal SKIPME yes");
        Assert.All(OnEveryNode("CLIENT UNPAUSE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));

        // Retried in the background until Redis takes them (a generous bound: a loaded machine).
        var waited = Stopwatch.StartNew();
        while (store.PendingFinishes > 0 && waited.Elapsed < TimeSpan.FromSeconds(50))
        {
            await Task.Delay(100);
        }

        output.WriteLine($"retried {store.FinishesRetried}, dropped {store.FinishesDropped}, pending {store.PendingFinishes} after {waited.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(0, store.PendingFinishes);
        Assert.Equal(0, store.FinishesDropped);
        var spent = Enumerable.Range(0, 30).Sum(Cost);
        var tokens = Enumerable.Range(0, 30).Sum(i => 10L * (i + 1));
        var user = await store.GetUserStateAsync("alice", BudgetPeriods.GetKey(BudgetPeriod.Day, time.GetUtcNow()));
        Assert.Equal((spent, tokens, 30L, 0m, 0), (user.SpentUsd, user.SpentTokens, user.Calls, user.ReservedUsd, user.InFlight));
        var run = await store.GetRunStateAsync("run-1");
        Assert.Equal((spent, tokens, 30L, 0m, 0), (run!.SpentUsd, run.SpentTokens, run.Calls, run.ReservedUsd, run.InFlight));

        // The team's budget and the key's token window were settled once each too: what is left of them is exact.
        var next = await store.ReserveAsync(request with { TeamBudget = new BudgetLimits(spent + 0.10m, 0, 0), ReserveUsd = 0.10m });
        Assert.True(next.IsAdmitted, $"{next.Rejection} {next.FailedScope}");
        Assert.Equal(1_000_000 - tokens - 1000, next.Tokens.Remaining);
        Assert.False((await store.ReserveAsync(request with { TeamBudget = new BudgetLimits(spent + 0.10m, 0, 0), ReserveUsd = 0.000001m })).IsAdmitted);
    }

    /// <summary>Settles calls [from, to) at once; each must fail (Redis is paused) and be queued for a retry.</summary>
    private static async Task SettleUnconfirmedAsync(RedisAdmissionStore store, List<Reservation> held, int from, int to, Func<int, decimal> cost)
    {
        var settles = Enumerable.Range(from, to - from).Select(async i =>
        {
            var failure = await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await store.SettleAsync(held[i], cost(i), 10 * (i + 1)));
            Assert.Contains("retried", failure.Message, StringComparison.Ordinal);
        });
        await Task.WhenAll(settles);
    }
}

[RequiresRedisServer]
public sealed class RedisSingleSettlementRetryTests(RedisServerFixture redis, ITestOutputHelper output)
    : RedisSettlementRetryTests(output), IClassFixture<RedisServerFixture>
{
    protected override string ConnectionString => redis.ConnectionString;

    protected override string?[] OnEveryNode(string command) => [redis.TryCommand(command)];
}

[RequiresRedisServer]
public sealed class RedisClusterSettlementRetryTests(RedisClusterFixture cluster, ITestOutputHelper output)
    : RedisSettlementRetryTests(output), IClassFixture<RedisClusterFixture>
{
    protected override string ConnectionString => cluster.ConnectionString;

    protected override string?[] OnEveryNode(string command) => cluster.OnEveryNode(command);
}
