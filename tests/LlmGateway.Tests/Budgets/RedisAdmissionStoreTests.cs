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

    [RedisFact]
    public async Task BatchedAdmissions_DecideExactlyAsOneAtATime()
    {
        // Admissions that queue while one is in flight go to Redis together, in one script that shares reads and
        // writes between calls on the same scopes (settlements likewise). Calls started together here queue in the
        // order they start; the in-memory store, given the same calls one at a time in that order, must decide each
        // one the same way, and both must end in the same state. Limits are tight, so refusals of every kind occur.
        var store = (RedisAdmissionStore)Store;
        var reference = new InMemoryAdmissionStore(Options, Time);
        var random = new Random(20261121);
        var held = new List<(Reservation Redis, Reservation Memory)>();
        var admitted = 0;
        var refused = new HashSet<AdmissionRejection>();
        var calls = 0;
        for (var wave = 0; wave < 60; wave++)
        {
            if (wave == 20)
            {
                await store.HaltRunAsync("run-2");
                await reference.HaltRunAsync("run-2");
            }

            if (wave == 35)
            {
                await store.ResumeRunAsync("run-2");
                await reference.ResumeRunAsync("run-2");
            }

            var requests = Enumerable.Range(0, random.Next(1, 30)).Select(_ => RandomRequest(random)).ToList();
            calls += requests.Count;
            var started = requests.Select(request => store.ReserveAsync(request).AsTask()).ToList();
            var results = await Task.WhenAll(started);
            for (var i = 0; i < requests.Count; i++)
            {
                var expected = await reference.ReserveAsync(requests[i]);
                Assert.Equal(Describe(expected), Describe(results[i]));
                if (expected.IsAdmitted)
                {
                    admitted++;
                    held.Add((results[i].Reservation!, expected.Reservation!));
                }
                else
                {
                    refused.Add(expected.Rejection);
                }
            }

            // Finish some of the calls in flight, all at once: settle (at, below or above the estimate) or release.
            var finishing = held.Where(_ => random.Next(3) > 0).ToList();
            held.RemoveAll(finishing.Contains);
            var finishes = new List<Task>();
            foreach (var (redisHeld, memoryHeld) in finishing)
            {
                if (random.Next(5) == 0)
                {
                    finishes.Add(store.ReleaseAsync(redisHeld).AsTask());
                    await reference.ReleaseAsync(memoryHeld);
                }
                else
                {
                    var usd = Math.Round(redisHeld.ReservedUsd * (decimal)(0.5 + random.NextDouble()), 6);
                    var tokens = (long)(redisHeld.ReservedTokens * (0.5 + random.NextDouble()));
                    finishes.Add(store.SettleAsync(redisHeld, usd, tokens).AsTask());
                    await reference.SettleAsync(memoryHeld, usd, tokens);
                }
            }

            await Task.WhenAll(finishes);
            Time.Advance(TimeSpan.FromMilliseconds(random.Next(0, 5000)));
        }

        foreach (var user in new[] { "alice", "bob" })
        {
            var period = BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow());
            var expected = await reference.GetUserStateAsync(user, period);
            var actual = await store.GetUserStateAsync(user, period);
            Assert.Equal((expected.SpentUsd, expected.SpentTokens, expected.Calls, expected.ReservedUsd, expected.InFlight),
                (actual.SpentUsd, actual.SpentTokens, actual.Calls, actual.ReservedUsd, actual.InFlight));
        }

        foreach (var run in new[] { "run-1", "run-2", "run-3" })
        {
            var expected = await reference.GetRunStateAsync(run);
            var actual = await store.GetRunStateAsync(run);
            Assert.Equal((expected?.SpentUsd, expected?.Calls, expected?.ReservedUsd, expected?.InFlight, expected?.Halted),
                (actual?.SpentUsd, actual?.Calls, actual?.ReservedUsd, actual?.InFlight, actual?.Halted));
        }

        // Key lifetimes, applied after a batch's writes, reach every key that has one.
        var day = BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow());
        foreach (var key in new[] { $"{{u:alice}}b:{day}", $"{{u:alice}}bx:{day}", $"{{u:bob}}b:{day}", "{r:run-1}", "{r:run-1}x", "{r:run-3}" })
        {
            var ttl = redis.TryCommand($"PTTL {Options.KeyPrefix}{key}");
            Assert.True(ttl is not null && ttl.StartsWith(':') && long.Parse(ttl[1..], System.Globalization.CultureInfo.InvariantCulture) > 0, $"{key}: PTTL {ttl}");
        }

        // The test is only worth something if calls were really batched and every kind of decision came up.
        Assert.True(store.ReserveScripts < calls / 2, $"{store.ReserveScripts} reserve scripts for {calls} calls");
        Assert.InRange(admitted, calls / 5, calls - (calls / 5));
        Assert.Superset(new HashSet<AdmissionRejection> { AdmissionRejection.BudgetExceeded, AdmissionRejection.RateLimitExceeded, AdmissionRejection.RunHalted, AdmissionRejection.LoopDetected }, refused);

        static AdmissionRequest RandomRequest(Random random)
        {
            var user = random.Next(3) == 0 ? "bob" : "alice";
            var run = random.Next(4) switch { 0 => null, var n => "run-" + n };
            return new AdmissionRequest
            {
                User = user,
                UserBudget = new BudgetLimits(user == "alice" ? 20m : 8m, 0, 0),
                UserRateLimits = new RateLimits(150, 60_000),
                UserMaxInFlight = 12,
                Team = user == "bob" ? null : "team-1",
                TeamBudget = new BudgetLimits(15m, 0, 400),
                KeyId = random.Next(2) == 0 ? "key-a" : "key-b",
                KeyRateLimits = new RateLimits(100, 0),
                RunId = run,
                RunBudget = new BudgetLimits(4m, 60_000, 0),
                RunMaxRepeats = 5,
                RunMaxInFlight = 6,
                RequestHash = "h" + random.Next(8),
                ReserveUsd = Math.Round((decimal)random.NextDouble() * 0.2m, 4),
                ReserveTokens = random.Next(10, 800),
                ReservationTtl = TimeSpan.FromSeconds(random.Next(20, 90)),
            };
        }

        static string Describe(AdmissionResult result) =>
            $"{result.IsAdmitted} {result.Rejection} {result.FailedScope} {result.FailedLimit} {result.LimitValue} {result.RetryAfter} "
            + $"{result.Requests} {result.Tokens} {result.SpentFractions.User:F5} {result.SpentFractions.Team:F5} {result.SpentFractions.Run:F5}";
    }

    protected override IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider) =>
        new RedisAdmissionStore(redis.ConnectionString, options, timeProvider);

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
