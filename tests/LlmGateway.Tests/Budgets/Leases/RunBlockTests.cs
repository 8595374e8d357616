using LlmGateway.Budgets;
using LlmGateway.Budgets.Leases;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Budgets.Leases;

/// <summary>
/// Exclusive run blocks (LeasedAdmissionStore.Runs.cs): a replica that admitted a run's calls eight in a row owns the
/// run and decides its calls locally; another replica's call, a halt or a state read makes it write back and let go.
/// On one redis-server and on the 3-master cluster. Time is a <see cref="FakeTimeProvider"/>: a sweep (write-back)
/// happens only when a test moves the clock.
/// </summary>
public abstract class RunBlockTests : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 11, 21, 10, 0, 0, TimeSpan.Zero);

    private readonly List<LeasedAdmissionStore> _stores = [];

    protected abstract string ConnectionString { get; }

    /// <summary>Whether a run's steps are the in-memory store's (on a cluster an undone per-call step skips a number).</summary>
    protected virtual bool StepsExact => true;

    protected FakeTimeProvider Time { get; } = new(Start);

    protected AdmissionStoreOptions Options { get; } = new()
    {
        KeyPrefix = "runblock-" + Guid.NewGuid().ToString("N")[..12] + ":",
        OperationTimeout = TimeSpan.FromSeconds(2),
    };

    public void Dispose()
    {
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    [RedisFact]
    public async Task OneReplica_DecidesARunOnItsBlock_AsTheExactStore()
    {
        // Differential: one call at a time, a replica with leases against the in-memory store, every call in one run
        // whose own limits bind (budget, in-flight cap, loop guard, deadline, halts); the user's and team's budgets
        // are ample, so the blocks admit them and the run is decided on the run block once claimed. Every answer, its
        // refusal (kind, scope, limit, value, Retry-After) and the step must match, and in the end the run's state.
        var store = NewReplica();
        var reference = new InMemoryAdmissionStore(Options, Time);
        var random = new Random(20261205);
        var held = new List<(Reservation Leased, Reservation Memory)>();
        var runRefusals = new HashSet<AdmissionLimit>();
        var refusedOnBlock = 0;
        var lastStep = 0L;
        for (var i = 0; i < 600; i++)
        {
            if (i is 200 or 420)
            {
                await store.HaltRunAsync("run-d");
                await reference.HaltRunAsync("run-d");
            }

            if (i is 230 or 450)
            {
                await store.ResumeRunAsync("run-d");
                await reference.ResumeRunAsync("run-d");
            }

            var request = Call(random, i);
            var decisions = store.RunBlockCounts.LocalDecisions;
            var expected = await reference.ReserveAsync(request);
            var actual = await store.ReserveAsync(request);
            Assert.True(Describe(expected) == Describe(actual), $"call {i}: {request}\nexpected {Describe(expected)}\nactual   {Describe(actual)}");
            if (expected.IsAdmitted)
            {
                Assert.True(StepsExact ? actual.Reservation!.Step == expected.Reservation!.Step : actual.Reservation!.Step > lastStep, $"call {i}: step {actual.Reservation!.Step}, expected {expected.Reservation!.Step} (last {lastStep})");
                lastStep = actual.Reservation.Step;
                held.Add((actual.Reservation!, expected.Reservation!));
            }
            else
            {
                runRefusals.Add(expected.FailedLimit);
                refusedOnBlock += store.RunBlockCounts.LocalDecisions > decisions ? 1 : 0;
            }

            while (held.Count > (random.Next(3) == 0 ? 0 : 1))
            {
                var (leased, memory) = held[random.Next(held.Count)];
                held.Remove((leased, memory));
                if (random.Next(6) == 0)
                {
                    await store.ReleaseAsync(leased);
                    await reference.ReleaseAsync(memory);
                }
                else
                {
                    var usd = Math.Round(leased.ReservedUsd * (decimal)(0.3 + (random.NextDouble() * 0.7)), 6);
                    var tokens = (long)(leased.ReservedTokens * (0.5 + (random.NextDouble() / 2)));
                    await store.SettleAsync(leased, usd, tokens);
                    await reference.SettleAsync(memory, usd, tokens);
                }
            }

            Time.Advance(TimeSpan.FromMilliseconds(random.Next(0, 120)));
            await WhenClaimSettledAsync(store);
        }

        foreach (var (leased, memory) in held)
        {
            await store.SettleAsync(leased, leased.ReservedUsd, leased.ReservedTokens);
            await reference.SettleAsync(memory, memory.ReservedUsd, memory.ReservedTokens);
        }

        var counts = store.RunBlockCounts;
        Assert.True(counts.LocalDecisions > 300, $"run blocks: {counts}");
        Assert.True(refusedOnBlock > 20, $"{refusedOnBlock} refusals on the block");
        Assert.Superset(new HashSet<AdmissionLimit> { AdmissionLimit.Usd, AdmissionLimit.InFlight, AdmissionLimit.Repeats, AdmissionLimit.Deadline, AdmissionLimit.None }, runRefusals);
        var want = await reference.GetRunStateAsync("run-d");
        var got = await store.GetRunStateAsync("run-d");
        Assert.Equal((want!.SpentUsd, want.SpentTokens, want.Calls, want.ReservedUsd, want.InFlight, want.Halted), (got!.SpentUsd, got.SpentTokens, got.Calls, got.ReservedUsd, got.InFlight, got.Halted));

        static AdmissionRequest Call(Random random, int i) => new()
        {
            User = "alice",
            UserBudget = new BudgetLimits(1000m, 0, 0),
            Team = "team-1",
            TeamBudget = new BudgetLimits(1000m, 0, 0),
            RunId = "run-d",
            // The run's budget rises now and then (a config change), so it refuses and admits again.
            RunBudget = new BudgetLimits(1m + (i / 150), 0, 0),
            RunMaxInFlight = i % 3 == 0 ? 1 : 2,
            RunMaxRepeats = 4,
            RunDeadline = i < 560 ? TimeSpan.Zero : TimeSpan.FromSeconds(30),
            // The loop guard refuses a fifth repeat; the prompts change every 50 calls, as an agent's do, so the run
            // goes on (and the in-memory store, which forgets the least recently seen past 64, forgets only old ones).
            RequestHash = $"prompt-{i / 50}-{random.Next(24)}",
            ReserveUsd = Math.Round((decimal)random.NextDouble() * 0.05m, 4),
            ReserveTokens = random.Next(10, 800),
            ReservationTtl = TimeSpan.FromSeconds(60),
        };

        static string Describe(AdmissionResult result) =>
            $"{result.IsAdmitted} {result.Rejection} {result.FailedScope} {result.FailedLimit} {result.LimitValue} {result.RetryAfter}";
    }

    [RedisFact]
    public async Task AnotherReplicasCall_TakesTheRunFromItsOwner_AndEveryCentIsKept()
    {
        // a admits ten calls of the run in a row and owns it; two of them are still in flight when b's call comes.
        // b asks a to let go: a writes back what settled and turns its two calls in flight into per-call holds. b's call
        // is admitted; a's two calls then settle per call. The run's spend is exactly what the calls cost, nothing is
        // held, and the steps are one to twelve.
        var a = NewReplica();
        var b = NewReplica();
        var request = RunCall(0.02m);
        var inFlight = new List<Reservation>();
        var steps = new List<long>();
        for (var i = 0; i < 10; i++)
        {
            var result = await a.ReserveAsync(request with { RequestHash = "p" + i });
            Assert.True(result.IsAdmitted, $"call {i}: {result.Rejection}");
            steps.Add(result.Reservation!.Step);
            if (i >= 8)
            {
                inFlight.Add(result.Reservation);
            }
            else
            {
                await a.SettleAsync(result.Reservation, 0.01m, 10);
            }

            await WhenClaimSettledAsync(a);
        }

        Assert.True(a.OwnsRun("run-h"), $"a does not own the run: {a.RunBlockCounts}");
        Assert.True(a.RunBlockCounts.LocalDecisions > 0);

        var other = await b.ReserveAsync(request with { RequestHash = "b" });
        Assert.True(other.IsAdmitted, $"b: {other.Rejection}");
        steps.Add(other.Reservation!.Step);
        Assert.False(a.OwnsRun("run-h"));
        await b.SettleAsync(other.Reservation, 0.01m, 10);
        foreach (var call in inFlight)
        {
            await a.SettleAsync(call, 0.015m, 10);
        }

        var last = await a.ReserveAsync(request with { RequestHash = "last" });
        steps.Add(last.Reservation!.Step);
        await a.ReleaseAsync(last.Reservation);

        Assert.Equal(Enumerable.Range(1, 12).Select(s => (long)s), steps);
        var run = await b.GetRunStateAsync("run-h");
        Assert.Equal((0.12m, 11L, 0m, 0), (run!.SpentUsd, run.Calls, run.ReservedUsd, run.InFlight));
    }

    [RedisFact]
    public async Task ReplicasTakingTurns_ABurstEach_NeverPassTheRunBudget()
    {
        // Four replicas take turns, each sending a burst of 25 concurrent calls of $0.01 against a $1.00 run budget:
        // each burst's replica claims the run (after eight in a row) and the next one takes it over. Settled at their
        // reservation, exactly 100 fit; never more is admitted, and the spend is exactly what was admitted.
        var replicas = Enumerable.Range(0, 4).Select(_ => NewReplica()).ToArray();
        var request = RunCall(0.01m) with { RunBudget = new BudgetLimits(1.00m, 0, 0), RunMaxInFlight = 0 };
        var admitted = 0;
        var rounds = new List<int>();
        for (var round = 0; round < 8; round++)
        {
            var replica = replicas[round % 4];
            var results = await Task.WhenAll(Enumerable.Range(0, 25).Select(async i =>
            {
                var result = await replica.ReserveAsync(request with { RequestHash = $"r{round}-{i}" });
                if (!result.IsAdmitted)
                {
                    Assert.Equal((AdmissionScope.Run, AdmissionLimit.Usd), (result.FailedScope, result.FailedLimit));
                    return 0;
                }

                await Task.Yield();
                await replica.SettleAsync(result.Reservation, 0.01m, 10);
                return 1;
            }));
            admitted += results.Sum();
            rounds.Add(results.Sum());
            Time.Advance(TimeSpan.FromMilliseconds(100));
        }

        Assert.True(admitted == 100, $"admitted {admitted} per round {string.Join(" ", rounds)}; run blocks {string.Join(", ", replicas.Select(r => r.RunBlockCounts))}");
        Assert.True(replicas.Sum(r => r.RunBlockCounts.Claims) >= 2, string.Join(", ", replicas.Select(r => r.RunBlockCounts)));
        var run = await replicas[0].GetRunStateAsync("run-h");
        Assert.Equal((1.00m, 100L, 0m), (run!.SpentUsd, run.Calls, run.ReservedUsd));
    }

    [RedisFact]
    public async Task HaltOnAnotherReplica_StopsTheOwner_ItsNextCallIsRefused()
    {
        // Event-driven: the clock never moves, so only the halt's message can stop a deciding on its block.
        var a = NewReplica();
        var b = NewReplica();
        await OwnAsync(a);

        await b.HaltRunAsync("run-h");
        await WaitUntilAsync(() => !a.OwnsRun("run-h"));

        Assert.Equal(AdmissionRejection.RunHalted, (await a.ReserveAsync(RunCall(0.01m))).Rejection);
        Assert.Equal(AdmissionRejection.RunHalted, (await b.ReserveAsync(RunCall(0.01m))).Rejection);
    }

    [RedisFact]
    public async Task StateRead_OnAnotherReplica_IsExact_WhileTheRunIsOwned()
    {
        // a settled calls on its block that no sweep has written back yet (the clock does not move): b's read asks a to
        // let go first, so it sees every cent, and a call a still has in flight as held.
        var a = NewReplica();
        var b = NewReplica();
        var held = await OwnAsync(a);

        var run = await b.GetRunStateAsync("run-h");

        Assert.False(a.OwnsRun("run-h"));
        Assert.Equal((0.09m, 9L, 0.02m, 1), (run!.SpentUsd, run.Calls, run.ReservedUsd, run.InFlight));
        await a.SettleAsync(held, 0.01m, 10);
        run = await b.GetRunStateAsync("run-h");
        Assert.Equal((0.10m, 10L, 0m, 0), (run!.SpentUsd, run.Calls, run.ReservedUsd, run.InFlight));
    }

    [RedisFact]
    public async Task DeadOwner_ItsClaimRunsOut_AndAnotherReplicaGoesOn()
    {
        // a owns the run and dies without writing back: b's calls wait for a's claim to run out (1 s), then go on. What
        // a settled after its last write-back is lost (as a leased block's: bounded by one sweep in real life).
        var a = NewReplica();
        var b = NewReplica();
        await OwnAsync(a);
        a.Kill();

        Time.Advance(TimeSpan.FromMilliseconds(RedisAdmissionStore.RunOwnershipMs + 1));
        var result = await b.ReserveAsync(RunCall(0.01m));

        Assert.True(result.IsAdmitted, $"{result.Rejection}");
        Assert.True(result.Reservation!.Step > 10, $"step {result.Reservation.Step}: a dead owner's steps must not be given again");
    }

    [RedisFact]
    public async Task SlowRun_StaysPerCall_ABurstClaimsIt()
    {
        // Five calls a second on one replica: a block's write-backs (four a second) would cost more than the calls' own
        // scripts, so no claim. Eight within a second: claimed.
        var a = NewReplica();
        for (var i = 0; i < 12; i++)
        {
            var result = await a.ReserveAsync(RunCall(0.01m) with { RequestHash = "slow" + i });
            await a.SettleAsync(result.Reservation!, 0.01m, 10);
            await WhenClaimSettledAsync(a);
            Time.Advance(TimeSpan.FromMilliseconds(200));
        }

        Assert.Equal(0, a.RunBlockCounts.Claims);
        await OwnAsync(a);
    }

    [RedisFact]
    public async Task ManyDistinctRequests_TheBlockLetsGo_AndTheRunStaysPerCall_AllCharged()
    {
        // Memory bounds: a block lets go once it counts 4,096 distinct requests for the loop guard, and a claim refuses
        // a run hash that large (over 600 fields), so the run goes on per call. Every call is charged once.
        var a = NewReplica();
        await a.SettleAsync(await OwnAsync(a), 0.01m, 10);
        var request = RunCall(0.001m) with { RunBudget = new BudgetLimits(100m, 0, 0) };
        var lostAt = -1;
        for (var i = 0; i < 4_200; i++)
        {
            var result = await a.ReserveAsync(request with { RequestHash = "distinct" + i });
            Assert.True(result.IsAdmitted, $"call {i}: {result.Rejection}");
            await a.SettleAsync(result.Reservation!, 0.001m, 1);
            if (i % 200 == 199)
            {
                // A sweep now and then, as a real clock would: write-backs extend the claim and the steps reserved.
                Time.Advance(TimeSpan.FromMilliseconds(250));
            }

            await WhenClaimSettledAsync(a);
            if (lostAt < 0 && !a.OwnsRun("run-h"))
            {
                lostAt = i;
            }
        }

        Assert.InRange(lostAt, 4_000, 4_100);
        Assert.False(a.OwnsRun("run-h"));
        Assert.Equal(1, a.RunBlockCounts.Claims);
        var run = await a.GetRunStateAsync("run-h");
        Assert.Equal((0.10m + 4.2m, 10L + 4_200, 0m), (run!.SpentUsd, run.Calls, run.ReservedUsd));
    }

    [RedisFact]
    public async Task ConnectionLost_TheOwnerLetsGo_AndTheNextCallIsDecidedByRedis()
    {
        // A fail-over may have lost the owner field and the block's writes: the owner must not decide on after a lost
        // connection. Simulated by killing every client connection (the block then writes back once Redis answers).
        var a = NewReplica();
        var held = await OwnAsync(a);

        using (var admin = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(ConnectionString + ",allowAdmin=true"))
        {
            foreach (var endpoint in admin.GetEndPoints())
            {
                var server = admin.GetServer(endpoint);
                if (!server.IsReplica)
                {
                    await server.ExecuteAsync("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
                }
            }
        }

        await WaitUntilAsync(() => !a.OwnsRun("run-h"));
        RunBudgetState? run = null;
        for (var i = 0; i < 100 && run is null; i++)
        {
            try
            {
                run = await a.GetRunStateAsync("run-h");
            }
            catch (AdmissionStoreUnavailableException)
            {
                await Task.Delay(50);
            }
        }

        // Written back once Redis answered: what settled on the block, and the call still in flight as held.
        Assert.Equal((0.09m, 9L, 0.02m, 1), (run!.SpentUsd, run.Calls, run.ReservedUsd, run.InFlight));
        await a.SettleAsync(held, 0.01m, 10);
        run = await a.GetRunStateAsync("run-h");
        Assert.Equal((0.10m, 10L, 0m, 0), (run!.SpentUsd, run.Calls, run.ReservedUsd, run.InFlight));
    }

    private static AdmissionRequest RunCall(decimal usd) => new()
    {
        User = "alice",
        UserBudget = new BudgetLimits(1000m, 0, 0),
        RunId = "run-h",
        RunBudget = new BudgetLimits(10m, 0, 0),
        RunMaxInFlight = 4,
        ReserveUsd = usd,
        ReserveTokens = 10,
        ReservationTtl = TimeSpan.FromSeconds(60),
        RequestHash = "same",
    };

    /// <summary>Ten calls of $0.01 on replica a until it owns the run; nine settled at $0.01, the last one returned in flight.</summary>
    private static async Task<Reservation> OwnAsync(LeasedAdmissionStore store)
    {
        Reservation? last = null;
        for (var i = 0; i < 10; i++)
        {
            var result = await store.ReserveAsync(RunCall(0.01m) with { RequestHash = "own" + i, ReserveUsd = i == 9 ? 0.02m : 0.01m });
            Assert.True(result.IsAdmitted, $"call {i}: {result.Rejection}");
            if (i < 9)
            {
                await store.SettleAsync(result.Reservation!, 0.01m, 10);
            }

            last = result.Reservation;
            await WhenClaimSettledAsync(store);
        }

        Assert.True(store.OwnsRun("run-h"), $"no claim: {store.RunBlockCounts}");
        return last!;
    }

    /// <summary>
    /// A claim goes out in the background after the eighth call in a row, and a write-back when the fake clock passes a
    /// sweep: wait for them (events, not a time), as a real clock would have.
    /// </summary>
    private static async Task WhenClaimSettledAsync(LeasedAdmissionStore store)
    {
        for (var i = 0; i < 200 && (store.ClaimsInFlight > 0 || store.WriteBacksInFlight > 0); i++)
        {
            await Task.Delay(5);
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 1000 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), "the pub/sub message never arrived");
    }

    private LeasedAdmissionStore NewReplica()
    {
        var connection = new RedisConnection(ConnectionString, TimeSpan.FromSeconds(5));
        var inner = new RedisAdmissionStore(connection, Options, Time, ownsConnection: true);
        var store = new LeasedAdmissionStore(connection, inner, Options, new LeaseOptions(), Time, ownsInner: true);
        store.WarmUpAsync().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
        _stores.Add(store);
        return store;
    }
}

[RequiresRedisServer]
public sealed class RunBlockRedisTests(RedisServerFixture redis) : RunBlockTests, IClassFixture<RedisServerFixture>
{
    protected override string ConnectionString => redis.ConnectionString;
}

[RequiresRedisServer]
public sealed class RunBlockClusterTests(RedisClusterFixture cluster) : RunBlockTests, IClassFixture<RedisClusterFixture>
{
    protected override string ConnectionString => cluster.ConnectionString;

    protected override bool StepsExact => false;
}

public sealed class RunClaimOptionTests
{
    [Fact]
    public void NegativeClaimThreshold_IsAConfigError_NamingItsKeyPath()
    {
        var errors = LlmGateway.Configuration.GatewayOptionsValidator.Validate(new LlmGateway.Configuration.GatewayOptions { Store = new() { LeaseRunClaimAfter = -1 } });

        Assert.Contains("Gateway:Store:LeaseRunClaimAfter: must not be negative (0: never claim a run)", errors);
        Assert.DoesNotContain(LlmGateway.Configuration.GatewayOptionsValidator.Validate(new LlmGateway.Configuration.GatewayOptions { Store = new() { LeaseRunClaimAfter = 0 } }), e => e.Contains("LeaseRunClaimAfter", StringComparison.Ordinal));
    }
}
