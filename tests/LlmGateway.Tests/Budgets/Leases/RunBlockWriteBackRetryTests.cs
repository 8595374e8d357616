using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Budgets.Leases;

/// <summary>
/// A run block's write-backs that Redis did not confirm are sent again as they were and applied once: one whose reply
/// was lost (Redis paused: it times out here, then runs when the pause ends) is not charged again by its repeat, and one
/// that never ran (the paused connection killed) is charged by it. Without the write-back's id the first is charged
/// twice; without the repeat the second's spend is lost.
/// </summary>
public abstract class RunBlockWriteBackRetryTests : RedisPausingTests
{
    [RedisFact]
    public async Task WriteBacksUnconfirmedWhileRedisIsAway_AreChargedExactlyOnce()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero));
        var options = new AdmissionStoreOptions { KeyPrefix = "run-retry-" + Guid.NewGuid().ToString("N")[..12] + ":", OperationTimeout = TimeSpan.FromMilliseconds(300) };
        var (store, _) = await NewLeasedStoreAsync(options, time);
        var request = new AdmissionRequest
        {
            User = "alice",
            UserBudget = new BudgetLimits(100m, 0, 0),
            RunId = "run-r",
            RunBudget = new BudgetLimits(100m, 0, 0),
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
                var result = await store.ReserveAsync(request with { RequestHash = "p" + i });
                Assert.True(result.IsAdmitted, $"call {i}: {result.Rejection} {result.FailedScope}");
                await store.SettleAsync(result.Reservation!, Cost(i), 10 * (i + 1));
                await QuietAsync(store);
            }
        }

        // Calls 0–11: the replica owns the run after eight; the rest settle on its block.
        await AdmitAndSettleAsync(0, 12);
        Assert.True(store.OwnsRun("run-r"), $"no claim: {store.RunBlockCounts}");

        // Redis paused at the sweep: the write-back times out here, and runs when the pause ends.
        Assert.All(OnEveryNode("CLIENT PAUSE 20000 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        time.Advance(TimeSpan.FromMilliseconds(250));
        await QuietAsync(store);
        Assert.All(OnEveryNode("CLIENT UNPAUSE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));

        // Calls 12–15 on the block; the next sweep sends the unconfirmed write-back again (a no-op now) and then theirs.
        await AdmitAndSettleAsync(12, 16);
        time.Advance(TimeSpan.FromMilliseconds(250));
        await QuietAsync(store);

        // Calls 16–19; paused again, and the connection killed with the write-back it had sent: it never runs.
        await AdmitAndSettleAsync(16, 20);
        Assert.All(OnEveryNode("CLIENT PAUSE 20000 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        time.Advance(TimeSpan.FromMilliseconds(250));
        OnEveryNode("CLIENT KILL TYPE normal SKIPME yes");
        Assert.All(OnEveryNode("CLIENT UNPAUSE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        await QuietAsync(store);

        // The read lets the block go (sending what is unconfirmed first), once Redis answers again.
        RunBudgetState? run = null;
        for (var i = 0; i < 100 && run is null; i++)
        {
            try
            {
                run = await store.GetRunStateAsync("run-r");
            }
            catch (AdmissionStoreUnavailableException)
            {
                await Task.Delay(50);
            }
        }

        Assert.NotNull(run);
        Assert.False(store.OwnsRun("run-r"));
        var spent = Enumerable.Range(0, 20).Sum(Cost);
        var tokens = Enumerable.Range(0, 20).Sum(i => 10L * (i + 1));
        Assert.Equal((spent, tokens, 20L, 0m, 0), (run.SpentUsd, run.SpentTokens, run.Calls, run.ReservedUsd, run.InFlight));
        Assert.Equal(0, store.LostReturns);
    }

    /// <summary>Waits until no claim or write-back is out (events, not a time: a real clock would have waited too).</summary>
    private static async Task QuietAsync(LlmGateway.Budgets.Leases.LeasedAdmissionStore store)
    {
        for (var i = 0; i < 400 && (store.ClaimsInFlight > 0 || store.WriteBacksInFlight > 0); i++)
        {
            await Task.Delay(10);
        }
    }
}

[RequiresRedisServer]
public sealed class RunBlockSingleWriteBackRetryTests(RedisServerFixture redis) : RunBlockWriteBackRetryTests, IClassFixture<RedisServerFixture>
{
    protected override string ConnectionString => redis.ConnectionString;

    protected override string?[] OnEveryNode(string command) => [redis.TryCommand(command)];
}

[RequiresRedisServer]
public sealed class RunBlockClusterWriteBackRetryTests(RedisClusterFixture cluster) : RunBlockWriteBackRetryTests, IClassFixture<RedisClusterFixture>
{
    protected override string ConnectionString => cluster.ConnectionString;

    protected override string?[] OnEveryNode(string command) => cluster.OnEveryNode(command);
}
