using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Tests.Shared;
using StackExchange.Redis;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// The contract suite plus the differential test (batched against one at a time), for every Redis deployment the
/// store supports: a single redis-server (<see cref="RedisAdmissionStoreTests"/>, one script per batch) and a
/// 3-master Redis Cluster (<see cref="RedisClusterAdmissionStoreTests"/>, one script per hash slot).
/// </summary>
public abstract class RedisAdmissionContractTests : AdmissionStoreContractTests
{
    protected abstract string ConnectionString { get; }

    /// <summary>False on a cluster, where a call refused on another node after its run step held leaves a gap.</summary>
    protected virtual bool StepsConsecutive => true;

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
                Assert.True(Describe(expected) == Describe(results[i]), $"wave {wave} call {i} of {requests.Count}: {requests[i].User} {requests[i].RunId} {requests[i].KeyId}\nexpected {Describe(expected)}\nactual   {Describe(results[i])}");
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
        using var client = await ConnectionMultiplexer.ConnectAsync(ConnectionString);
        var day = BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow());
        foreach (var key in new[] { $"{{u:alice}}b:{day}", $"{{u:alice}}bx:{day}", $"{{u:bob}}b:{day}", "{r:run-1}", "{r:run-1}x", "{r:run-3}" })
        {
            var ttl = await client.GetDatabase().KeyTimeToLiveAsync(Options.KeyPrefix + key);
            Assert.True(ttl > TimeSpan.Zero, $"{key}: PTTL {ttl}");
        }

        // On a cluster, refusals by one scope gave back what the others held (and later calls were decided again).
        if (await store.IsClusterAsync())
        {
            Assert.True(store.UndoneSteps > 0, "no scope step was undone");
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

        // On a cluster a call refused by another scope's node after its run step held leaves a gap: steps there are
        // increasing and unique, not consecutive (Steps_OnACluster_AreIncreasingAndUnique).
        string Describe(AdmissionResult result) =>
            $"{result.IsAdmitted} {result.Rejection} {result.FailedScope} {result.FailedLimit} {result.LimitValue} {result.RetryAfter} "
            + $"{result.Requests} {result.Tokens} {result.SpentFractions.User:F5} {result.SpentFractions.Team:F5} {result.SpentFractions.Run:F5} step {(StepsConsecutive ? result.Reservation?.Step : null)}";
    }

    [RedisFact]
    public async Task Steps_TwoReplicasAlternating_CountOneSequence()
    {
        var other = NewStore();
        var request = Request() with { RunId = "run-steps" };
        var steps = new List<long>();
        for (var i = 0; i < 6; i++)
        {
            var store = i % 2 == 0 ? Store : other;
            var result = await store.ReserveAsync(request);
            Assert.True(result.IsAdmitted);
            steps.Add(result.Reservation.Step);
            await store.SettleAsync(result.Reservation, 0.01m, 10);
        }

        Assert.Equal([1L, 2L, 3L, 4L, 5L, 6L], steps);
    }

    protected override IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider) =>
        new RedisAdmissionStore(ConnectionString, options, timeProvider);
}
