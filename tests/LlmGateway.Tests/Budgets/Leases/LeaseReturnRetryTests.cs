using System.Diagnostics;
using LlmGateway.Budgets;
using LlmGateway.Budgets.Leases;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace LlmGateway.Tests.Budgets.Leases;

/// <summary>
/// Returns of leased blocks that Redis did not confirm are retried and charged exactly once: those whose reply was lost
/// (Redis paused with CLIENT PAUSE: the return times out, then runs when the pause ends) are not charged again by their
/// retry, and those that never ran (the paused connection killed with its queued scripts) are charged by it once Redis
/// answers. Without the retry the second group's spend is lost; without the return's id marker the first is charged
/// twice.
/// </summary>
public abstract class LeaseReturnRetryTests(ITestOutputHelper output) : RedisPausingTests
{
    [RedisFact]
    public async Task ReturnsLostOrUnconfirmedWhileRedisIsAway_AreChargedExactlyOnce()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero));
        var options = new AdmissionStoreOptions { KeyPrefix = "lease-retry-" + Guid.NewGuid().ToString("N")[..12] + ":", OperationTimeout = TimeSpan.FromMilliseconds(300) };
        var (store, inner) = await NewLeasedStoreAsync(options, time);
        store.ReturnRetryInterval = TimeSpan.FromMilliseconds(200);
        var request = new AdmissionRequest
        {
            User = "alice",
            UserBudget = new BudgetLimits(100m, 0, 0),
            Team = "sales",
            TeamBudget = new BudgetLimits(100m, 0, 0),
            ReserveUsd = 0.10m,
            ReserveTokens = 1000,
            ReservationTtl = TimeSpan.FromMinutes(10),
        };

        // Told to the clients: call i cost 0.001 × (i + 1) USD and 10 × (i + 1) tokens.
        static decimal Cost(int i) => 0.001m * (i + 1);
        async Task AdmitAndSettleAsync(int from, int to)
        {
            for (var i = from; i < to; i++)
            {
                var result = await store.ReserveAsync(request);
                Assert.True(result.IsAdmitted, $"{result.Rejection} {result.FailedScope}");
                await store.SettleAsync(result.Reservation!, Cost(i), 10 * (i + 1));
            }
        }

        // Calls 0–9 on blocks; Redis paused when the blocks return: the returns time out, then run when the pause ends.
        await AdmitAndSettleAsync(0, 10);
        Assert.Equal(0, store.Inner.ReserveScripts);
        Assert.All(OnEveryNode("CLIENT PAUSE 20000 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        await store.ReturnAllAsync();
        Assert.True(store.PendingReturns > 0, "the returns should wait for a retry");
        Assert.All(OnEveryNode("CLIENT UNPAUSE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));

        // Calls 10–19: paused again, and the connection killed with the returns it had sent: they never run.
        await AdmitAndSettleAsync(10, 20);
        Assert.All(OnEveryNode("CLIENT PAUSE 20000 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        await store.ReturnAllAsync();
        OnEveryNode("CLIENT KILL TYPE normal SKIPME yes");
        Assert.All(OnEveryNode("CLIENT UNPAUSE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));

        // Retried in the background until Redis takes them (a generous bound: a loaded machine).
        var waited = Stopwatch.StartNew();
        while (store.PendingReturns > 0 && waited.Elapsed < TimeSpan.FromSeconds(50))
        {
            await Task.Delay(100);
        }

        output.WriteLine($"pending {store.PendingReturns}, lost {store.LostReturns} after {waited.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(0, store.PendingReturns);
        Assert.Equal(0, store.LostReturns);
        var spent = Enumerable.Range(0, 20).Sum(Cost);
        var tokens = Enumerable.Range(0, 20).Sum(i => 10L * (i + 1));
        var user = await store.GetUserStateAsync("alice", BudgetPeriods.GetKey(BudgetPeriod.Day, time.GetUtcNow()));
        Assert.Equal((spent, tokens, 20L, 0m, 0), (user.SpentUsd, user.SpentTokens, user.Calls, user.ReservedUsd, user.InFlight));

        // The team's budget was charged once too: exactly what is left of it fits, and nothing more.
        var team = new BudgetLimits(spent + 0.10m, 0, 0);
        Assert.True((await inner.ReserveAsync(request with { TeamBudget = team })).IsAdmitted);
        Assert.False((await inner.ReserveAsync(request with { TeamBudget = team, ReserveUsd = 0.000001m })).IsAdmitted);
    }

    [RedisFact]
    public async Task ReturnsGivenUp_AreLoggedAndCounted_AndConnectionLossIsToo()
    {
        // Redis paused while the replica stops: its block's return times out, is tried once more at stop and given up.
        // Operators must see that spend went unrecorded: an error line and llm_gateway_lease_returns_lost_total. Killing
        // the connections first closes the blocks: a warning and llm_gateway_lease_blocks_closed_on_connection_loss_total.
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero));
        var options = new AdmissionStoreOptions { KeyPrefix = "lease-lost-" + Guid.NewGuid().ToString("N")[..12] + ":", OperationTimeout = TimeSpan.FromMilliseconds(200) };
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new LlmGateway.Telemetry.GatewayMetrics(services.GetRequiredService<IMeterFactory>());
        using var lost = new MetricCollector<long>(services.GetRequiredService<IMeterFactory>(), LlmGateway.Telemetry.GatewayMetrics.MeterName, "llm_gateway_lease_returns_lost");
        using var closed = new MetricCollector<long>(services.GetRequiredService<IMeterFactory>(), LlmGateway.Telemetry.GatewayMetrics.MeterName, "llm_gateway_lease_blocks_closed_on_connection_loss");
        var log = new FakeLogger<LeasedAdmissionStore>();
        var (store, _) = await NewLeasedStoreAsync(options, time, log, metrics, track: false);
        var request = new AdmissionRequest { User = "alice", UserBudget = new BudgetLimits(100m, 0, 0), ReserveUsd = 0.10m, ReserveTokens = 1000, ReservationTtl = TimeSpan.FromMinutes(10) };

        var first = await store.ReserveAsync(request);
        await store.SettleAsync(first.Reservation!, 0.05m, 100);
        OnEveryNode("CLIENT KILL TYPE normal SKIPME yes");
        for (var i = 0; i < 500 && store.ConnectionLosses == 0; i++)
        {
            await Task.Delay(10);
        }

        closed.RecordObservableInstruments();
        Assert.True(closed.LastMeasurement?.Value >= 1, "no closed-blocks measurement");
        Assert.Contains(log.Collector.GetSnapshot(), r => r.Id.Name == "LeaseBlocksClosed" && r.Level == LogLevel.Warning);
        // Reconnected (on a cluster every node in turn): the next call is decided again.
        AdmissionResult? second = null;
        for (var i = 0; i < 250 && second is null; i++)
        {
            try
            {
                second = await store.ReserveAsync(request);
            }
            catch (AdmissionStoreUnavailableException)
            {
                await Task.Delay(20);
            }
        }

        Assert.NotNull(second);
        await store.SettleAsync(second.Reservation!, 0.05m, 100);
        try
        {
            Assert.All(OnEveryNode("CLIENT PAUSE 5000 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
            store.Dispose();
        }
        finally
        {
            OnEveryNode("CLIENT UNPAUSE");
        }

        Assert.True(store.LostReturns > 0, "nothing was given up");
        lost.RecordObservableInstruments();
        Assert.Equal(store.LostReturns, lost.LastMeasurement?.Value);
        var line = Assert.Single(log.Collector.GetSnapshot(), r => r.Id.Name == "LeaseReturnsLost");
        Assert.Equal(LogLevel.Error, line.Level);
        Assert.Contains("not charged", line.Message, StringComparison.Ordinal);
    }
}

[RequiresRedisServer]
public sealed class LeaseSingleReturnRetryTests(RedisServerFixture redis, ITestOutputHelper output)
    : LeaseReturnRetryTests(output), IClassFixture<RedisServerFixture>
{
    protected override string ConnectionString => redis.ConnectionString;

    protected override string?[] OnEveryNode(string command) => [redis.TryCommand(command)];
}

[RequiresRedisServer]
public sealed class LeaseClusterReturnRetryTests(RedisClusterFixture cluster, ITestOutputHelper output)
    : LeaseReturnRetryTests(output), IClassFixture<RedisClusterFixture>
{
    protected override string ConnectionString => cluster.ConnectionString;

    protected override string?[] OnEveryNode(string command) => cluster.OnEveryNode(command);
}
