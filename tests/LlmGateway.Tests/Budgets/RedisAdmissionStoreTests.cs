using System.Diagnostics;
using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Tests.Shared;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// The contract suite against <see cref="RedisAdmissionStore"/> on a real redis-server, plus what only a shared
/// store has to prove: several replicas enforce one limit, and Redis trouble is bounded in time and recovered from.
/// </summary>
[RequiresRedisServer]
public sealed class RedisAdmissionStoreTests(RedisServerFixture redis) : RedisAdmissionContractTests, IClassFixture<RedisServerFixture>
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
            var held = new List<Reservation>();
            for (var i = 0; i < 8; i++)
            {
                held.Add((await store.ReserveAsync(Request())).Reservation!);
            }

            redis.Stop();
            try
            {
                for (var i = 0; i < 5; i++)
                {
                    var clock = Stopwatch.StartNew();
                    await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await store.ReserveAsync(Request()));
                    Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"took {clock.Elapsed}");
                }

                // Settlements queue behind one another (one batch in flight at a time): each still fails in bounded time.
                await Task.WhenAll(held.Select(async reservation =>
                {
                    var clock = Stopwatch.StartNew();
                    await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await store.SettleAsync(reservation, 0.01m, 10));
                    Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"settle took {clock.Elapsed}");
                }));

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

            // ... and settlements flow again: the batches that failed while it was down hold nothing back.
            var after = (await store.ReserveAsync(Request(usd: 0.05m))).Reservation!;
            await store.SettleAsync(after, 0.05m, 10);
            var user = await store.GetUserStateAsync("alice", BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow()));
            Assert.True(user.SpentUsd >= 0.05m, $"spent {user.SpentUsd}");
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

    [RedisFact]
    public async Task OutOfMemory_IsUnavailable_ThenRecovers()
    {
        Assert.True((await Store.ReserveAsync(Request())).IsAdmitted);
        Assert.Equal("+OK", redis.TryCommand("CONFIG SET maxmemory-policy noeviction"));
        Assert.Equal("+OK", redis.TryCommand("CONFIG SET maxmemory 1"));
        try
        {
            var failure = await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await Store.ReserveAsync(Request()));
            Assert.Contains("OOM", failure.Message, StringComparison.Ordinal);
        }
        finally
        {
            Assert.Equal("+OK", redis.TryCommand("CONFIG SET maxmemory 0"));
        }

        Assert.True((await Store.ReserveAsync(Request())).IsAdmitted);
    }

    [RedisFact]
    public async Task ReadOnlyReplica_IsUnavailable_ThenRecovers()
    {
        // The server turns into a replica (of nothing that answers), as a primary does when a fail-over demotes it.
        Assert.True((await Store.ReserveAsync(Request())).IsAdmitted);
        Assert.Equal("+OK", redis.TryCommand("REPLICAOF 127.0.0.1 1"));
        try
        {
            await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await Store.ReserveAsync(Request()));
        }
        finally
        {
            Assert.Equal("+OK", redis.TryCommand("REPLICAOF NO ONE"));
        }

        await WaitUntilAsync(() => TryReserveAsync(Store));
    }

    [RedisFact]
    public async Task StateStaysBoundedWhateverTheTraffic()
    {
        // Five calls every 100 ms for three minutes with a 30 s reservation TTL, a third of them never settled: Redis
        // holds at most 61 seconds of rate counters and one held-reservation bucket per second of TTL, not a
        // member per call (9,000 calls here).
        var request = Request(usd: 0.001m) with
        {
            UserRateLimits = new RateLimits(1_000_000, 1_000_000_000),
            Team = "team-a",
            TeamBudget = new BudgetLimits(1000m, 0, 0),
            RunId = "run-1",
            ReservationTtl = TimeSpan.FromSeconds(30),
        };
        var calls = 0;
        var unsettled = new List<Reservation>();
        for (var step = 0; step < 1800; step++)
        {
            for (var i = 0; i < 5; i++, calls++)
            {
                var reservation = await AdmitAsync(request);
                if (calls % 3 != 0)
                {
                    await Store.SettleAsync(reservation, 0.0005m, 50);
                }
                else
                {
                    unsettled.Add(reservation);
                }
            }

            Time.Advance(TimeSpan.FromMilliseconds(100));
        }

        Assert.InRange(Length("HLEN", "{u:alice}"), 1, (2 * 61) + 30 + 10); // rate seconds, in-flight seconds, counters
        Assert.InRange(Length("ZCARD", "{u:alice}x"), 1, 31);
        Assert.InRange(Length("HLEN", "{r:run-1}"), 1, (3 * 31) + 20);
        Assert.InRange(Length("ZCARD", "{r:run-1}x"), 1, 31);

        // The lost reservations still held are exactly those whose (whole-second) expiry has not come.
        var held = unsettled.Count(r => r.ExpiresAt > Time.GetUtcNow());
        Assert.InRange(held, 400, 600);
        Assert.Equal(held, (await UserStateAsync()).InFlight);
        Assert.Equal(held, (await Store.GetRunStateAsync("run-1"))!.InFlight);
    }

    [RedisFact]
    public async Task KeysOfTheEarlierSortedSetLayout_DoNotBreakAdmissions()
    {
        // A gateway upgraded onto a Redis that still holds the previous layout's keys (sorted sets and hashes with
        // other fields, expiring by their TTLs): no key is read as a type it is not, and calls are admitted.
        foreach (var command in new[]
        {
            "ZADD {0}rl:k:key-a 1 old", "ZADD {0}rl:u:alice 1 old", "HSET {0}rlt:u:alice _t 5", "ZADD {0}uif:alice 1 old",
            "ZADD {0}runr:run-1 1 old", "HSET {0}run:run-1 la 1 lr 1 start 1 su 7", "HSET {0}u:alice h2 x",
        })
        {
            Assert.NotNull(redis.TryCommand(string.Format(System.Globalization.CultureInfo.InvariantCulture, command, Options.KeyPrefix)));
        }

        var request = Request() with
        {
            KeyId = "key-a",
            KeyRateLimits = new RateLimits(10, 1000),
            UserRateLimits = new RateLimits(10, 1000),
            RunId = "run-1",
            RunBudget = new BudgetLimits(1m, 0, 0),
        };
        var result = await Store.ReserveAsync(request);

        Assert.True(result.IsAdmitted, result.ErrorCode);
        await Store.SettleAsync(result.Reservation!, 0.01m, 10);
        Assert.Equal(1, (await Store.GetRunStateAsync("run-1"))!.Calls);
    }

    protected override string ConnectionString => redis.ConnectionString;

    private long Length(string command, string key)
    {
        var reply = redis.TryCommand($"{command} {Options.KeyPrefix}{key}");
        Assert.NotNull(reply);
        Assert.StartsWith(":", reply);
        return long.Parse(reply[1..], System.Globalization.CultureInfo.InvariantCulture);
    }

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
