using System.Diagnostics;
using LlmGateway.Budgets;
using LlmGateway.Tests.Shared;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// The contract suite against <see cref="RedisAdmissionStore"/> on a real redis-server, plus what only a shared
/// store has to prove: several replicas enforce one limit, and Redis trouble is bounded in time and recovered from.
/// </summary>
[RequiresRedisServer]
public sealed class RedisAdmissionStoreTests(RedisServerFixture redis) : AdmissionStoreContractTests, IClassFixture<RedisServerFixture>
{
    [RedisFact]
    public async Task TwoReplicas_OneRedis_ShareOneRequestsPerMinuteLimit()
    {
        var replicas = new[] { Store, NewStore() };
        var request = Request() with { UserRateLimits = new RateLimits(10, 0) };

        var admitted = 0;
        for (var i = 0; i < 30; i++)
        {
            if ((await replicas[i % 2].ReserveAsync(request)).IsAdmitted)
            {
                admitted++;
            }
        }

        Assert.Equal(10, admitted);
    }

    [RedisFact]
    public async Task TwoReplicas_OneRedis_ShareBudgetAndHalts()
    {
        var a = Store;
        var b = NewStore();
        var request = Request(usd: 0.40m) with { UserBudget = new BudgetLimits(1m, 0, 0), RunId = "run-1" };
        await a.SettleAsync((await a.ReserveAsync(request)).Reservation!, 0.40m, 10);
        Assert.True((await b.ReserveAsync(request)).IsAdmitted);
        Assert.Equal(AdmissionRejection.BudgetExceeded, (await a.ReserveAsync(request)).Rejection);

        await a.HaltRunAsync("run-1");

        Assert.Equal(AdmissionRejection.RunHalted, (await b.ReserveAsync(request with { ReserveUsd = 0m })).Rejection);
        await b.ResumeRunAsync("run-1");
        Assert.True((await a.ReserveAsync(request with { ReserveUsd = 0m })).IsAdmitted);
    }

    [RedisFact]
    public async Task RedisKilled_CallsFailWithinBoundedTime_ThenRecover()
    {
        var store = new RedisAdmissionStore(redis.ConnectionString, Options with { OperationTimeout = TimeSpan.FromMilliseconds(100) }, Time);
        try
        {
            // The first call also connects: with a 100 ms budget it may take a few tries on a loaded machine.
            await WaitUntilAsync(() => TryReserveAsync(store));
            redis.Stop();
            try
            {
                for (var i = 0; i < 5; i++)
                {
                    var clock = Stopwatch.StartNew();
                    await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await store.ReserveAsync(Request()));
                    Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"took {clock.Elapsed}");
                }

                var pingClock = Stopwatch.StartNew();
                Assert.False(await store.PingAsync());
                Assert.True(pingClock.Elapsed < TimeSpan.FromSeconds(1), $"ping took {pingClock.Elapsed}");
            }
            finally
            {
                redis.Start();
            }

            // A restarted Redis has lost its script cache: NOSCRIPT is answered by loading the script again.
            await WaitUntilAsync(() => TryReserveAsync(store));
            Assert.True(await store.PingAsync());
        }
        finally
        {
            store.Dispose();
        }
    }

    [RedisFact]
    public async Task RedisUnreachable_FromTheStart_FailsWithinBoundedTime()
    {
        using var store = new RedisAdmissionStore("127.0.0.1:1", Options with { OperationTimeout = TimeSpan.FromMilliseconds(100) }, Time);

        for (var i = 0; i < 3; i++)
        {
            var clock = Stopwatch.StartNew();
            await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await store.ReserveAsync(Request()));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"took {clock.Elapsed}");
        }

        Assert.False(await store.PingAsync());
    }

    [RedisFact]
    public async Task ScriptCacheFlushed_ScriptsAreLoadedAgain()
    {
        Assert.True((await Store.ReserveAsync(Request())).IsAdmitted);

        Assert.Equal("+OK", redis.TryCommand("SCRIPT FLUSH"));

        Assert.True((await Store.ReserveAsync(Request())).IsAdmitted);
        Assert.Equal(2, (await UserStateAsync()).InFlight);
    }

    protected override IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider) =>
        new RedisAdmissionStore(redis.ConnectionString, options, timeProvider);

    private static async Task<bool> TryReserveAsync(IAdmissionStore store)
    {
        try
        {
            return (await store.ReserveAsync(Request())).IsAdmitted;
        }
        catch (AdmissionStoreUnavailableException)
        {
            return false;
        }
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "condition not met within 20 s");
            await Task.Delay(50);
        }
    }
}
