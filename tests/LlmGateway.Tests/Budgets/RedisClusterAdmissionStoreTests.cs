using LlmGateway.Budgets;
using LlmGateway.Tests.Shared;
using Xunit.Abstractions;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// The contract suite and the differential test on a real 3-master Redis Cluster (each scope's keys in one hash slot,
/// one script per slot), plus what only a cluster has to prove: a burst from two replicas never passes a limit that
/// is enforced on several nodes at once, and a refusal by one node gives back what the others held.
/// </summary>
[RequiresRedisServer]
public sealed class RedisClusterAdmissionStoreTests(RedisClusterFixture cluster, ITestOutputHelper output)
    : RedisAdmissionContractTests, IClassFixture<RedisClusterFixture>
{
    protected override string ConnectionString => cluster.ConnectionString;

    protected override bool StepsConsecutive => false;

    [RedisFact]
    public async Task Steps_OnACluster_AreIncreasingAndUnique()
    {
        // Two replicas, one run, calls refused on the user's node now and then: every admitted call's step is new and
        // larger than the previous one's of the same store.
        var other = NewStore();
        await Store.HaltUserAsync("bob");
        var steps = new List<long>();
        for (var i = 0; i < 20; i++)
        {
            var store = i % 2 == 0 ? Store : other;
            var result = await store.ReserveAsync(Request() with { RunId = "run-steps", User = i % 3 == 2 ? "bob" : "alice" });
            if (result.IsAdmitted)
            {
                steps.Add(result.Reservation.Step);
                await store.SettleAsync(result.Reservation, 0.01m, 10);
            }

            Time.Advance(TimeSpan.FromMilliseconds(1));
        }

        Assert.Equal(steps.Count, steps.Distinct().Count());
        Assert.Equal(steps.Order(), steps);
        Assert.True(steps.Count >= 10);
    }

    protected override IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider)
    {
        // As the gateway's warm-up does before it reports ready: connect to every node and load the scripts. A first
        // call that also had to connect to three nodes could take longer than the store timeout on a loaded machine.
        var store = (RedisAdmissionStore)base.CreateStore(options, timeProvider);
        store.LoadScriptsAsync().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
        return store;
    }

    [RedisFact]
    public async Task Store_OnACluster_UsesOneScriptPerSlot()
    {
        var store = (RedisAdmissionStore)Store;
        Assert.True((await store.ReserveAsync(Request())).IsAdmitted);
        Assert.True(await store.IsClusterAsync());
    }

    [RedisFact]
    public async Task OneScriptForEveryScope_OnACluster_IsCrossSlot_AndUnavailable()
    {
        // The single-Redis path forced onto the cluster: its script touches several slots. That is refused (CROSSSLOT,
        // by the client or the server) and reported as the store being unavailable, not as an unhandled error.
        var store = (RedisAdmissionStore)Store;
        Assert.True((await store.ReserveAsync(Request())).IsAdmitted);
        store.AssumeTopology(cluster: false);

        var failure = await Assert.ThrowsAsync<AdmissionStoreUnavailableException>(async () => await store.ReserveAsync(Request() with { RunId = "run-x", Team = "team-x" }));

        output.WriteLine(failure.Message);
    }

    [RedisFact]
    public async Task ScriptsFlushedOnEveryNode_ABurstReloadsThem()
    {
        Assert.True((await Store.ReserveAsync(Request())).IsAdmitted);
        Assert.All(cluster.OnEveryNode("SCRIPT FLUSH"), reply => Assert.StartsWith("+OK", reply, StringComparison.Ordinal));

        var results = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => Store.ReserveAsync(Request() with { RunId = "run-" + (i % 5), Team = "team-f" }).AsTask()));

        Assert.All(results, r => Assert.True(r.IsAdmitted));
        Assert.Equal(41, (await UserStateAsync()).InFlight);
    }

    [RedisFact]
    public async Task RefusedByOneScope_TheOtherScopesGiveBackWhatTheyHeld()
    {
        // The user's budget refuses; the team, the run and the key's window (other slots) had held the call: all is
        // given back, and the run the call would have started does not exist.
        var store = (RedisAdmissionStore)Store;
        var request = Request(usd: 0.50m, tokens: 500) with
        {
            UserBudget = new BudgetLimits(0.40m, 0, 0),
            Team = "team-z",
            TeamBudget = new BudgetLimits(10m, 0, 0),
            RunId = "run-z",
            RunBudget = new BudgetLimits(10m, 0, 0),
            KeyId = "key-z",
            KeyRateLimits = new RateLimits(10, 0),
        };

        var refused = await store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.BudgetExceeded, refused.Rejection);
        Assert.Equal(AdmissionScope.User, refused.FailedScope);
        Assert.Equal(6, store.UndoneSteps); // three steps held, twice: a refusal by a limit gets a second try
        Assert.Null(await store.GetRunStateAsync("run-z"));
        var admitted = await store.ReserveAsync(request with { ReserveUsd = 0.10m });
        Assert.True(admitted.IsAdmitted);
        Assert.Equal(9, admitted.Requests.Remaining); // the key's window holds this call only
        Assert.Equal(0, admitted.SpentFractions.Team); // nothing of the refused call's 0.50 is held by the team
        Assert.Equal(0.01, (await store.ReserveAsync(request with { ReserveUsd = 0.10m })).SpentFractions.Team, 6);
        var run = await store.GetRunStateAsync("run-z");
        Assert.Equal((0.20m, 2), (run!.ReservedUsd, run.InFlight));
    }

    [RedisFact]
    public async Task Burst_FromTwoReplicas_NeverPassesAnyLimit_AndAdmitsWhatFits()
    {
        // 200 calls at once from two replicas, four users of one team, on three runs: the user budgets, the team budget
        // and the run budgets each bind, and live on different nodes. Every admitted call is settled at its full
        // reservation, so spend = reserved worst case: no scope may end above its limit.
        var replicas = new[] { (RedisAdmissionStore)Store, (RedisAdmissionStore)NewStore() };
        var users = new[] { "u1", "u2", "u3", "u4" };
        var random = new Random(1203);
        var requests = Enumerable.Range(0, 200).Select(i => Request(usd: 0.01m * random.Next(1, 6)) with
        {
            User = users[i % 4],
            UserBudget = new BudgetLimits(0.50m, 0, 0),
            Team = "team-x",
            TeamBudget = new BudgetLimits(1.50m, 0, 0),
            RunId = "run-" + (i % 3),
            RunBudget = new BudgetLimits(0.60m, 0, 0),
            KeyId = "key-" + (i % 2),
            KeyRateLimits = new RateLimits(150, 0),
        }).ToList();

        var results = await Task.WhenAll(requests.Select((request, i) => replicas[i % 2].ReserveAsync(request).AsTask()));
        var admitted = results.Where(r => r.IsAdmitted).ToList();
        await Task.WhenAll(results.Select((r, i) => r.IsAdmitted ? replicas[i % 2].SettleAsync(r.Reservation!, r.Reservation!.ReservedUsd, 0).AsTask() : Task.CompletedTask));

        var period = BudgetPeriods.GetKey(LlmGateway.Configuration.BudgetPeriod.Day, Time.GetUtcNow());
        var spentByUser = new Dictionary<string, decimal>();
        foreach (var user in users)
        {
            var state = await Store.GetUserStateAsync(user, period);
            Assert.True(state.SpentUsd <= 0.50m, $"{user} spent {state.SpentUsd}");
            Assert.Equal(0, state.InFlight);
            Assert.Equal(0m, state.ReservedUsd);
            spentByUser[user] = state.SpentUsd;
        }

        var team = spentByUser.Values.Sum();
        Assert.True(team <= 1.50m, $"team spent {team}");
        var runs = new List<decimal>();
        for (var run = 0; run < 3; run++)
        {
            var state = await Store.GetRunStateAsync("run-" + run);
            Assert.NotNull(state);
            Assert.True(state.SpentUsd <= 0.60m, $"run-{run} spent {state.SpentUsd}");
            Assert.Equal(0m, state.ReservedUsd);
            runs.Add(state.SpentUsd);
        }

        // What fits: the same calls one at a time in the in-memory store. A false refusal (a concurrent call's hold on
        // another node, about to be undone) shows as less spend here.
        var spent = admitted.Sum(r => r.Reservation!.ReservedUsd);
        Assert.Equal(team, spent);
        var reference = new InMemoryAdmissionStore(Options, Time);
        var fits = 0m;
        foreach (var request in requests)
        {
            if ((await reference.ReserveAsync(request)).Reservation is { } held)
            {
                fits += held.ReservedUsd;
            }
        }

        var undone = replicas.Sum(r => r.UndoneSteps);
        var redecided = replicas.Sum(r => r.Redecided);
        var retried = replicas.Sum(r => r.Retried);
        output.WriteLine($"admitted {admitted.Count}/200, spent {spent} of {fits} that fits one at a time (users {string.Join(" ", spentByUser.Values)}, runs {string.Join(" ", runs)}), steps undone {undone}, calls decided again {redecided}, refusals tried again {retried}");
        Assert.True(spent >= fits * 0.9m, $"admitted {spent} of the {fits} that fits");
    }
}
