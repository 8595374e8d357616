using System.Diagnostics;
using LlmGateway.Budgets;
using LlmGateway.Budgets.Leases;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// Admissions that Redis grants after their caller gave up (the store timeout ran out while Redis was paused with
/// CLIENT PAUSE; the scripts run when the pause ends) hold nothing: nobody will settle them, so they are given back when
/// the late reply comes. Before, each held the call's worst case and its in-flight slots until the reservation TTL
/// (10 min), refusing calls that fit. Per call (every scope in one script on a single Redis, one step per scope on a
/// cluster) and with leases (the run's own step).
/// </summary>
public abstract class RedisLateAdmissionTests : RedisPausingTests
{
    [RedisFact]
    public Task PerCall_AdmissionsGrantedAfterTheCallerGaveUp_AreGivenBack() => RunAsync(leases: false);

    [RedisFact]
    public Task Leased_RunStepsGrantedAfterTheCallerGaveUp_AreGivenBack() => RunAsync(leases: true);

    /// <summary>
    /// The gateway's own connection settings (a 1 s connect timeout, as its DI container makes them) and a pause longer
    /// than StackExchange.Redis's default timeout for a command (which defaults to the connect timeout): the client must
    /// not give up on scripts already sent, or their late replies are lost and what they admitted held until the TTL.
    /// </summary>
    [RedisFact]
    public Task PerCall_PauseLongerThanTheRedisClientsOwnTimeout_AdmissionsAreStillGivenBack() =>
        RunAsync(leases: false, connectTimeout: TimeSpan.FromSeconds(1), pauseMs: 3000, holdPause: TimeSpan.FromMilliseconds(2500));

    [RedisFact]
    public async Task CallerGone_WhileItsBatchWasOnTheWay_ItsAdmissionIsGivenBack()
    {
        // The client goes away (its request cancelled) while Redis is paused, well within the store timeout: the batch
        // itself succeeds when the pause ends and admits the call, which nobody will settle: it is released at once.
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero));
        var options = new AdmissionStoreOptions { KeyPrefix = "late-gone-" + Guid.NewGuid().ToString("N")[..12] + ":", OperationTimeout = TimeSpan.FromSeconds(5) };
        var store = Track(new RedisAdmissionStore(ConnectionString, options, time));
        await store.LoadScriptsAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var request = new AdmissionRequest
        {
            User = "alice",
            UserBudget = new BudgetLimits(100m, 0, 0),
            RunId = "run-gone",
            RunMaxInFlight = 1,
            ReserveUsd = 0.10m,
            ReserveTokens = 1000,
            ReservationTtl = TimeSpan.FromMinutes(10),
        };

        Assert.All(OnEveryNode("CLIENT PAUSE 800 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        using (var gone = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await store.ReserveAsync(request, gone.Token));
        }

        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < TimeSpan.FromSeconds(20) && store.ReleasedLate == 0)
        {
            await Task.Delay(20);
        }

        Assert.Equal(1, store.ReleasedLate);
        var run = await store.GetRunStateAsync("run-gone");
        for (var i = 0; i < 250 && run is not null && run.InFlight != 0; i++)
        {
            await Task.Delay(20);
            run = await store.GetRunStateAsync("run-gone");
        }

        Assert.True(run is null || run.InFlight == 0, $"the run still holds {run?.InFlight} call(s)");
        Assert.True((await store.ReserveAsync(request)).IsAdmitted, "the run's one in-flight slot is still taken");
    }

    [RedisFact]
    public async Task Leased_BlocksGrantedAfterTheReplicaGaveUp_AreGivenBack()
    {
        // A replica's call needs a new block; Redis is paused, the grant times out and the call is refused as
        // unavailable; the grant runs when the pause ends and sets room aside for a block nobody holds: it must go back,
        // not stay set aside until the block's TTL. Each kind in turn (a call's blocks are taken in order: budget, rate
        // window, in-flight cap), the blocks before it taken first with Redis running.
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero));
        var options = new AdmissionStoreOptions { KeyPrefix = "late-grant-" + Guid.NewGuid().ToString("N")[..12] + ":", OperationTimeout = TimeSpan.FromMilliseconds(200) };
        var (store, inner) = await NewLeasedStoreAsync(options, time);
        var budget = new AdmissionRequest { User = "alice", UserBudget = new BudgetLimits(1m, 0, 0), ReserveUsd = 0.10m, ReserveTokens = 100, ReservationTtl = TimeSpan.FromMinutes(10) };
        var rated = budget with { UserRateLimits = new RateLimits(3, 0) };

        // (An RPM of 1,000 here so that the warm call's rate block still has room: the late grant is the cap's.)
        var roomy = budget with { UserRateLimits = new RateLimits(1000, 0) };
        var capped = roomy with { UserMaxInFlight = 2 };
        (string User, AdmissionRequest? Warm, AdmissionRequest Late)[] stages =
        [
            ("budget", null, budget),
            ("rate", budget, rated),
            ("in-flight", roomy, capped),
        ];
        var period = BudgetPeriods.GetKey(BudgetPeriod.Day, time.GetUtcNow());
        var stage = 0;
        foreach (var (user, warm, late) in stages)
        {
            stage++;
            if (warm is not null)
            {
                var first = await store.ReserveAsync(warm with { User = user });
                await store.SettleAsync(first.Reservation!, 0.01m, 10);
            }

            Assert.All(OnEveryNode("CLIENT PAUSE 1500 WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
            await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await store.ReserveAsync(late with { User = user }));
            OnEveryNode("CLIENT UNPAUSE");

            // The late grant ran and its give-back was sent (an event: the store counts them).
            var waited = Stopwatch.StartNew();
            while (waited.Elapsed < TimeSpan.FromSeconds(20) && store.LateGrantsGivenBack < stage)
            {
                await Task.Delay(20);
            }

            Assert.Equal(stage, store.LateGrantsGivenBack);

            // This replica's own blocks go back; what the late grant set aside must be gone too.
            await store.ReturnAllAsync();
            var state = await inner.GetUserStateAsync(user, period);
            while (waited.Elapsed < TimeSpan.FromSeconds(20) && (state.ReservedUsd != 0 || state.InFlight != 0 || store.PendingReturns > 0))
            {
                await Task.Delay(50);
                await store.ReturnAllAsync();
                state = await inner.GetUserStateAsync(user, period);
            }

            Assert.True(state.ReservedUsd == 0 && state.InFlight == 0, $"{user}: still set aside {state.ReservedUsd} USD, {state.InFlight} slot(s)");

            // The RPM window counts only the calls made (the warm one, when it had the limit): the rest fit, per call.
            var made = warm?.UserRateLimits.IsUnlimited == false ? 1 : 0;
            var held = new List<Reservation>();
            for (var i = made; i < 3; i++)
            {
                var result = await inner.ReserveAsync(rated with { User = user });
                Assert.True(result.IsAdmitted, $"{user}: call {i + 1} of an RPM of 3 refused ({result.FailedLimit}): the window counts calls never made");
                held.Add(result.Reservation);
            }

            foreach (var reservation in held)
            {
                await inner.ReleaseAsync(reservation);
            }
        }
    }

    /// <param name="holdPause">How long Redis stays paused after the calls gave up (by default it is unpaused at once).</param>
    private async Task RunAsync(bool leases, TimeSpan? connectTimeout = null, int pauseMs = 1500, TimeSpan holdPause = default)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 21, 10, 0, 0, TimeSpan.Zero));
        var options = new AdmissionStoreOptions { KeyPrefix = "late-" + Guid.NewGuid().ToString("N")[..12] + ":", OperationTimeout = TimeSpan.FromMilliseconds(200) };
        var connection = new RedisConnection(ConnectionString, connectTimeout ?? TimeSpan.FromSeconds(5));
        var inner = new RedisAdmissionStore(connection, options, time, ownsConnection: true);
        IAdmissionStore store = inner;
        if (leases)
        {
            var leased = new LeasedAdmissionStore(connection, inner, options, new LeaseOptions(), time, ownsInner: true);
            await leased.WarmUpAsync().WaitAsync(TimeSpan.FromSeconds(30));
            store = leased;
        }
        else
        {
            await inner.LoadScriptsAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }

        Track((IDisposable)store);
        var request = new AdmissionRequest
        {
            User = "alice",
            UserBudget = new BudgetLimits(100m, 0, 0),
            Team = "sales",
            TeamBudget = new BudgetLimits(100m, 0, 0),
            RunId = "run-late",
            RunBudget = new BudgetLimits(100m, 0, 0),
            RunMaxInFlight = 1,
            KeyId = "key-1",
            KeyRateLimits = new RateLimits(1000, 1_000_000),
            ReserveUsd = 0.10m,
            ReserveTokens = 1000,
            ReservationTtl = TimeSpan.FromMinutes(10),
        };

        // With leases the blocks are taken first (Redis running), so what is paused is the run's own step.
        var warm = await store.ReserveAsync(request with { RunId = "run-warm" });
        await store.SettleAsync(warm.Reservation!, 0.01m, 10);

        Assert.All(OnEveryNode($"CLIENT PAUSE {pauseMs} WRITE"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));
        var calls = Enumerable.Range(0, 5).Select(async _ =>
        {
            try
            {
                return (await store.ReserveAsync(request)).IsAdmitted;
            }
            catch (AdmissionStoreUnavailableException)
            {
                return false;
            }
        }).ToArray();
        Assert.All(await Task.WhenAll(calls), admitted => Assert.False(admitted, "a call was admitted while Redis was paused"));
        await Task.Delay(holdPause);
        OnEveryNode("CLIENT UNPAUSE");

        // The paused scripts ran when the pause ended (one of the five fit the run's in-flight cap of 1): what they
        // hold must be given back, so the run takes a call again and holds nothing.
        var waited = Stopwatch.StartNew();
        RunBudgetState? run = null;
        while (waited.Elapsed < TimeSpan.FromSeconds(20))
        {
            run = await inner.GetRunStateAsync("run-late");
            if (run is null || (run.InFlight == 0 && run.ReservedUsd == 0))
            {
                break;
            }

            await Task.Delay(50);
        }

        Assert.True(run is null || (run.InFlight == 0 && run.ReservedUsd == 0), $"the run still holds {run?.InFlight} call(s), {run?.ReservedUsd} USD");
        var next = await store.ReserveAsync(request);
        Assert.True(next.IsAdmitted, $"{next.Rejection} {next.FailedScope} {next.FailedLimit}");
        await store.SettleAsync(next.Reservation!, 0.01m, 10);
    }
}

[RequiresRedisServer]
public sealed class RedisSingleLateAdmissionTests(RedisServerFixture redis) : RedisLateAdmissionTests, IClassFixture<RedisServerFixture>
{
    protected override string ConnectionString => redis.ConnectionString;

    protected override string?[] OnEveryNode(string command) => [redis.TryCommand(command)];
}

[RequiresRedisServer]
public sealed class RedisClusterLateAdmissionTests(RedisClusterFixture cluster) : RedisLateAdmissionTests, IClassFixture<RedisClusterFixture>
{
    protected override string ConnectionString => cluster.ConnectionString;

    protected override string?[] OnEveryNode(string command) => cluster.OnEveryNode(command);
}
