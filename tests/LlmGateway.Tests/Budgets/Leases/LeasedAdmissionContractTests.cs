using LlmGateway.Budgets;
using LlmGateway.Budgets.Leases;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;

namespace LlmGateway.Tests.Budgets.Leases;

/// <summary>
/// The contract suite with leases (<see cref="LeasedAdmissionStore"/>) on a single redis-server and on a 3-master cluster,
/// plus what leases must prove: one replica with leases decides every call as the exact store does, a halt reaches every
/// replica through pub/sub, and a dead replica's blocks come back by TTL.
/// </summary>
public abstract class LeasedAdmissionContractTests : AdmissionStoreContractTests
{
    protected abstract string ConnectionString { get; }

    /// <summary>
    /// Whether a run's steps are numbered as the in-memory store numbers them. On a cluster, a per-call admission whose
    /// run step held while another scope refused is undone, and its number is skipped: steps still only grow.
    /// </summary>
    protected virtual bool StepsExact => true;

    /// <summary>A replica with leases whose blocks take the whole room left (tests of who holds what).</summary>
    private LeaseOptions? _nextLease;

    /// <summary>Another replica with leases on the same Redis (disposed with the test).</summary>
    private protected LeasedAdmissionStore NewLeasedStore(LeaseOptions? lease = null)
    {
        _nextLease = lease;
        try
        {
            return (LeasedAdmissionStore)NewStore();
        }
        finally
        {
            _nextLease = null;
        }
    }

    [RedisFact]
    public async Task OneReplica_WithLeases_DecidesEveryCallAsTheExactStore()
    {
        // Differential: one call at a time, a replica with leases against the in-memory store. Calls are decided on
        // blocks (budgets, alice's RPM/TPM window, her key's RPM, bob's in-flight cap); a call of a run then has its run
        // decided per call on the run's keys alone (budget, calls, in-flight cap, loop guard, halt). A block's room is
        // given back before a call goes per call, so near a limit nothing is refused that fits and the refusal (kind,
        // scope, limit, Retry-After) and the run step are the exact store's. Limits are tight: refusals of each kind occur.
        var store = Store;
        var reference = new InMemoryAdmissionStore(Options, Time);
        var random = new Random(20261203);
        var held = new List<(Reservation Leased, Reservation Memory)>();
        var refused = new HashSet<AdmissionRejection>();
        var limits = new HashSet<AdmissionLimit>();
        var runRefusals = new HashSet<AdmissionLimit>();
        var lastStep = 0L;
        var admitted = 0;
        for (var i = 0; i < 400; i++)
        {
            if (i == 150)
            {
                await store.HaltUserAsync("bob");
                await reference.HaltUserAsync("bob");
            }

            if (i == 220)
            {
                await store.ResumeUserAsync("bob");
                await reference.ResumeUserAsync("bob");
            }

            if (i == 260)
            {
                await store.HaltRunAsync("run-1");
                await reference.HaltRunAsync("run-1");
            }

            if (i == 290)
            {
                await store.ResumeRunAsync("run-1");
                await reference.ResumeRunAsync("run-1");
            }

            var request = RandomRequest(random);
            var expected = await reference.ReserveAsync(request);
            var actual = await store.ReserveAsync(request);
            Assert.True(Describe(expected) == Describe(actual), $"call {i}: {request}\nexpected {Describe(expected)}\nactual   {Describe(actual)}");
            if (expected.IsAdmitted && request.RunId is not null)
            {
                Assert.True(StepsExact ? actual.Reservation!.Step == expected.Reservation!.Step : actual.Reservation!.Step > lastStep, $"call {i}: step {actual.Reservation!.Step}, expected {expected.Reservation!.Step} (last {lastStep})");
                lastStep = actual.Reservation.Step;
            }

            if (expected.IsAdmitted)
            {
                admitted++;
                held.Add((actual.Reservation!, expected.Reservation!));
            }
            else
            {
                refused.Add(expected.Rejection);
                limits.Add(expected.FailedLimit);
                if (expected.FailedScope == AdmissionScope.Run)
                {
                    runRefusals.Add(expected.FailedLimit);
                }
            }

            if (held.Count > 0 && random.Next(3) > 0)
            {
                var (leased, memory) = held[random.Next(held.Count)];
                held.Remove((leased, memory));
                if (random.Next(5) == 0)
                {
                    await store.ReleaseAsync(leased);
                    await reference.ReleaseAsync(memory);
                }
                else
                {
                    var usd = Math.Round(leased.ReservedUsd * (decimal)(0.5 + (random.NextDouble() / 2)), 6);
                    var tokens = (long)(leased.ReservedTokens * (0.5 + (random.NextDouble() / 2)));
                    await store.SettleAsync(leased, usd, tokens);
                    await reference.SettleAsync(memory, usd, tokens);
                }
            }

            Time.Advance(TimeSpan.FromMilliseconds(random.Next(0, 400)));
        }

        foreach (var user in new[] { "alice", "bob" })
        {
            var period = BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow());
            var expected = await reference.GetUserStateAsync(user, period);
            var actual = await store.GetUserStateAsync(user, period);
            Assert.Equal((expected.SpentUsd, expected.SpentTokens, expected.Calls, expected.ReservedUsd, expected.InFlight),
                (actual.SpentUsd, actual.SpentTokens, actual.Calls, actual.ReservedUsd, actual.InFlight));
        }

        Assert.InRange(admitted, 40, 360);
        Assert.Superset(new HashSet<AdmissionRejection> { AdmissionRejection.BudgetExceeded, AdmissionRejection.UserHalted, AdmissionRejection.RateLimitExceeded }, refused);
        Assert.Superset(new HashSet<AdmissionLimit> { AdmissionLimit.RequestsPerMinute, AdmissionLimit.TokensPerMinute, AdmissionLimit.InFlight }, limits);
        Assert.Superset(new HashSet<AdmissionRejection> { AdmissionRejection.RunHalted, AdmissionRejection.LoopDetected }, refused);
        Assert.Superset(new HashSet<AdmissionLimit> { AdmissionLimit.Usd, AdmissionLimit.InFlight }, runRefusals);

        static AdmissionRequest RandomRequest(Random random)
        {
            var user = random.Next(3) == 0 ? "bob" : "alice";
            var inRun = random.Next(3) == 0;
            return new AdmissionRequest
            {
                User = user,
                UserBudget = new BudgetLimits(user == "alice" ? 6m : 3m, 0, 0),
                Team = user == "bob" ? null : "team-1",
                TeamBudget = new BudgetLimits(5m, 0, 200),
                RunId = inRun ? "run-1" : null,
                RunBudget = new BudgetLimits(1m, 0, 0),
                RunMaxInFlight = 2,
                RunMaxRepeats = 3,
                RequestHash = "prompt-" + random.Next(16),
                UserRateLimits = user == "alice" ? new RateLimits(14, 4000) : default,
                KeyId = user == "alice" ? "key-a" : null,
                KeyRateLimits = new RateLimits(random.Next(2) == 0 ? 12 : 0, 0),
                UserMaxInFlight = user == "bob" ? 2 : 0,
                ReserveUsd = Math.Round((decimal)random.NextDouble() * 0.2m, 4),
                ReserveTokens = random.Next(10, 800),
                ReservationTtl = TimeSpan.FromSeconds(60),
            };
        }

        static string Describe(AdmissionResult result) =>
            $"{result.IsAdmitted} {result.Rejection} {result.FailedScope} {result.FailedLimit} {result.LimitValue} {result.RetryAfter}";
    }

    [RedisFact]
    public async Task Halt_ReachesEveryReplica_TheNextAdmissionAfterTheMessageIsRefused()
    {
        // Event-driven, no timing: replica a admits on a block (no Redis per call); replica b halts the user; once a has
        // received the pub/sub message, its next admission is refused. The fake clock never moves, so a's block window
        // never ends by itself: only the message can stop a from admitting on its block.
        var a = NewLeasedStore();
        var b = NewLeasedStore();
        var request = Request(usd: 0.01m) with { UserBudget = new BudgetLimits(100m, 0, 0) };
        Assert.True((await a.ReserveAsync(request)).IsAdmitted);
        var scripts = a.LeaseScriptsSent;
        Assert.True((await a.ReserveAsync(request)).IsAdmitted);
        Assert.Equal(scripts, a.LeaseScriptsSent);

        await b.HaltUserAsync("alice");
        await WaitUntilAsync(() => a.Invalidations >= 1);

        Assert.Equal(AdmissionRejection.UserHalted, (await a.ReserveAsync(request)).Rejection);
        Assert.Equal(AdmissionRejection.UserHalted, (await b.ReserveAsync(request)).Rejection);
        await a.ResumeUserAsync("alice");

        // b has heard its own halt (1) and now a's resume (2).
        await WaitUntilAsync(() => b.Invalidations >= 2);
        Assert.True((await b.ReserveAsync(request)).IsAdmitted);
    }

    [RedisFact]
    public async Task DeadReplica_ItsBlocksComeBackByTtl()
    {
        // Replica a takes all the room (fraction 1) for calls with a 10 s TTL and dies without returning it. Replica b is
        // refused while a's block is held, and admitted once the block's second has passed.
        var lease = new LeaseOptions { Fraction = 1 };
        var a = NewLeasedStore(lease);
        var b = NewLeasedStore(lease);
        var request = Request(usd: 0.10m) with { UserBudget = new BudgetLimits(1m, 0, 0), ReservationTtl = TimeSpan.FromSeconds(10) };
        var call = (await a.ReserveAsync(request)).Reservation!;
        await a.SettleAsync(call, 0.10m, 10);
        a.Kill();

        Assert.Equal(AdmissionRejection.BudgetExceeded, (await b.ReserveAsync(request with { ReserveUsd = 0.30m })).Rejection);
        Time.Advance(TimeSpan.FromSeconds(20));
        Assert.True((await b.ReserveAsync(request with { ReserveUsd = 0.30m })).IsAdmitted);

        // The dead replica's settled call was never charged (the spend a crash loses, bounded by one block's window).
        var state = await b.GetUserStateAsync("alice", BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow()));
        Assert.Equal(0m, state.SpentUsd);
        Assert.Equal(0.30m, state.ReservedUsd);
    }

    [RedisFact]
    public async Task Burst_OnFourReplicas_NeverPassesTheBudget_AndAdmitsNearlyAllThatFits()
    {
        // 200 calls at once over 4 replicas against room for 100: blocks shrink as the room goes, the last calls are
        // decided per call after each replica gave its unused room back. Never more than fits; at least 90 % of it.
        var replicas = Enumerable.Range(0, 4).Select(_ => NewLeasedStore()).ToArray();
        var request = Request(usd: 0.01m) with { UserBudget = new BudgetLimits(1m, 0, 0), Team = "team-1", TeamBudget = new BudgetLimits(5m, 0, 0) };
        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => replicas[i % 4].ReserveAsync(request).AsTask()));

        var admitted = results.Count(result => result.IsAdmitted);
        Assert.InRange(admitted, 90, 100);
        Assert.All(results.Where(result => !result.IsAdmitted), result => Assert.Equal(AdmissionRejection.BudgetExceeded, result.Rejection));
        foreach (var replica in replicas)
        {
            await replica.ReturnAllAsync();
        }

        var state = await replicas[0].GetUserStateAsync("alice", BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow()));
        Assert.Equal(admitted * 0.01m, state.ReservedUsd);
    }

    [RedisFact]
    public async Task SteadyLoad_OnBlocks_CostsFarLessThanOneScriptPerCall()
    {
        var store = NewLeasedStore();
        var request = Request(usd: 0.001m) with { UserBudget = new BudgetLimits(1000m, 0, 0), Team = "team-1", TeamBudget = new BudgetLimits(1000m, 0, 0) };
        for (var i = 0; i < 400; i++)
        {
            var result = await store.ReserveAsync(request);
            await store.SettleAsync(result.Reservation!, 0.001m, 50);
            Time.Advance(TimeSpan.FromMilliseconds(10));
        }

        // Grants, returns, and a charge of each open block's settled calls every sweep (250 ms).
        Assert.True(store.LeaseScriptsSent < 100, $"{store.LeaseScriptsSent} lease scripts for 400 calls");
        Assert.Equal(0, store.Inner.ReserveScripts);
        var state = await store.GetUserStateAsync("alice", BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow()));
        Assert.Equal(0.4m, state.SpentUsd);
        Assert.Equal(400, state.Calls);
        Assert.Equal(0m, state.ReservedUsd);
    }

    [RedisFact]
    public async Task RunCalls_ConcurrentOnTwoReplicas_AdmitExactlyTheRunBudget_InSharedScripts()
    {
        // A run's own limits are decided per call even with leases: 200 concurrent calls of $0.01 over two replicas
        // against a $1.00 run budget (the user's and team's blocks have ample room) admit exactly 100, and the run's
        // spend is exactly what they settled. The run steps of concurrent calls (admissions and settlements) share
        // scripts: fewer scripts than steps.
        var a = NewLeasedStore();
        var b = NewLeasedStore();
        var request = Request(usd: 0.01m, tokens: 10) with
        {
            UserBudget = new BudgetLimits(1000m, 0, 0),
            Team = "team-1",
            TeamBudget = new BudgetLimits(1000m, 0, 0),
            RunId = "run-shared",
            RunBudget = new BudgetLimits(1.00m, 0, 0),
            RunMaxInFlight = 150,
        };
        var calls = Enumerable.Range(0, 200).Select(async i =>
        {
            var store = i % 2 == 0 ? a : b;
            var result = await store.ReserveAsync(request);
            if (!result.IsAdmitted)
            {
                Assert.Equal((AdmissionScope.Run, AdmissionLimit.Usd), (result.FailedScope, result.FailedLimit));
                return 0;
            }

            await Task.Yield();
            await store.SettleAsync(result.Reservation, 0.01m, 10);
            return 1;
        });
        var admitted = (await Task.WhenAll(calls)).Sum();

        Assert.Equal(100, admitted);
        var run = await a.GetRunStateAsync("run-shared");
        Assert.NotNull(run);
        Assert.Equal((1.00m, 100L, 0m, 0), (run.SpentUsd, run.Calls, run.ReservedUsd, run.InFlight));
        var (scriptsA, stepsA) = a.Inner.RunStepCounts;
        var (scriptsB, stepsB) = b.Inner.RunStepCounts;
        // (Calls on blocks: a burst takes up to six grants of growing size before a call goes per call, every scope in one script.)
        Assert.True(stepsA + stepsB > 0, "no run steps");
        Assert.True(scriptsA + scriptsB < stepsA + stepsB, $"{scriptsA + scriptsB} scripts for {stepsA + stepsB} run steps");
    }

    [RedisFact]
    public async Task ConnectionLost_ClosesEveryBlock_TheNextCallIsDecidedByRedisAgain()
    {
        // A fail-over may promote a replica that lost the writes which set a block's room aside. Simulated: every
        // primary's data flushed and its client connections killed. The replica must not admit on a block granted
        // before the loss: its next call takes a new block, which the current Redis holds.
        var store = NewLeasedStore();
        var request = Request(usd: 0.10m) with { UserBudget = new BudgetLimits(10.00m, 0, 0) };
        Assert.True((await store.ReserveAsync(request)).IsAdmitted);
        var grants = store.LeaseScriptsSent;

        // The block has room for many calls (a quarter of $10): without the loss, the third call would be on it too.
        Assert.True((await store.ReserveAsync(request)).IsAdmitted);
        Assert.Equal(grants, store.LeaseScriptsSent);
        Assert.Equal(0, store.ConnectionLosses);

        using (var admin = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(ConnectionString + ",allowAdmin=true"))
        {
            foreach (var endpoint in admin.GetEndPoints())
            {
                var server = admin.GetServer(endpoint);
                if (!server.IsReplica)
                {
                    await server.FlushAllDatabasesAsync();
                    await server.ExecuteAsync("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
                }
            }
        }

        await WaitUntilAsync(() => store.ConnectionLosses > 0);

        // Reconnected (on a cluster every node in turn): the next call is decided again.
        AdmissionResult? third = null;
        for (var i = 0; i < 250 && third is null; i++)
        {
            try
            {
                third = await store.ReserveAsync(request);
            }
            catch (AdmissionStoreUnavailableException)
            {
                await Task.Delay(20);
            }
        }

        Assert.NotNull(third);
        Assert.True(third.IsAdmitted);
        Assert.True(store.LeaseScriptsSent > grants, "admitted on the block granted before the connection was lost");
        var held = await store.Inner.GetUserStateAsync("alice", BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow()));
        Assert.True(held.ReservedUsd >= 0.10m, $"Redis holds {held.ReservedUsd} for the call admitted after the loss");
    }

    [RedisFact]
    public async Task OpenBlock_SettledSpend_IsChargedEverySweep_SoADeadReplicaLosesLittle()
    {
        // Five calls settle on one open block (its 1 s window not over): Redis has charged nothing yet. One sweep later
        // (250 ms, the block still open) their cost is spent in Redis, so the replica's death loses none of it.
        var store = NewLeasedStore();
        var request = Request(usd: 0.10m) with { UserBudget = new BudgetLimits(10m, 0, 0) };
        for (var i = 0; i < 5; i++)
        {
            var admitted = await store.ReserveAsync(request);
            await store.SettleAsync(admitted.Reservation!, 0.05m, 10);
        }

        using var reader = new RedisAdmissionStore(ConnectionString, Options, Time);
        var period = BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow());
        Assert.Equal(0m, (await reader.GetUserStateAsync("alice", period)).SpentUsd);

        Time.Advance(new LeaseOptions().SweepInterval);
        var state = await reader.GetUserStateAsync("alice", period);
        for (var i = 0; i < 500 && state.SpentUsd != 0.25m; i++)
        {
            await Task.Delay(10);
            state = await reader.GetUserStateAsync("alice", period);
        }

        store.Kill();
        Assert.Equal((0.25m, 5L), (state.SpentUsd, state.Calls));

        // Spent plus held is what it was: the block's room is still set aside (until it expires, the replica being dead).
        Assert.True(state.ReservedUsd > 0m, "the open block's room was given back");
    }

    protected override IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider) =>
        CreateLeased(options, timeProvider, _nextLease ?? new LeaseOptions());

    protected static async Task WaitUntilAsync(Func<bool> condition)
    {
        // Waits for an event (a pub/sub message), failing only if it never comes; nothing here measures time.
        for (var i = 0; i < 1000 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), "the pub/sub message never arrived");
    }

    private LeasedAdmissionStore CreateLeased(AdmissionStoreOptions options, TimeProvider timeProvider, LeaseOptions lease)
    {
        var connection = new RedisConnection(ConnectionString, TimeSpan.FromSeconds(5));
        var inner = new RedisAdmissionStore(connection, options, timeProvider, ownsConnection: true);
        var store = new LeasedAdmissionStore(connection, inner, options, lease, timeProvider, ownsInner: true);
        store.WarmUpAsync().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
        return store;
    }
}

[RequiresRedisServer]
public sealed class LeasedAdmissionStoreTests(RedisServerFixture redis) : LeasedAdmissionContractTests, IClassFixture<RedisServerFixture>
{
    protected override string ConnectionString => redis.ConnectionString;
}

[RequiresRedisServer]
public sealed class LeasedClusterAdmissionStoreTests(RedisClusterFixture cluster) : LeasedAdmissionContractTests, IClassFixture<RedisClusterFixture>
{
    protected override string ConnectionString => cluster.ConnectionString;

    protected override bool StepsExact => false;
}
