using LlmGateway.Budgets;

namespace LlmGateway.Tests.Budgets;

/// <summary>The contract suite against <see cref="InMemoryAdmissionStore"/>, plus what only memory has to prove.</summary>
public sealed class InMemoryAdmissionStoreTests : AdmissionStoreContractTests
{
    [Fact]
    public async Task Sweep_IdleRuns_AreForgotten()
    {
        var store = (InMemoryAdmissionStore)Store;
        for (var i = 0; i < 100; i++)
        {
            var result = await store.ReserveAsync(Request() with { RunId = "run-" + i });
            await store.SettleAsync(result.Reservation!, 0.01m, 10);
        }

        Assert.Equal(100, store.RunCount);
        Time.Advance(Options.RunIdleExpiry);
        await store.ReserveAsync(Request() with { RunId = "fresh" });

        Assert.Equal(1, store.RunCount);
    }

    [Fact]
    public async Task Flood_OfNewRunIds_StaysWithinMaxRuns_NewOnesRefused_TrackedRunsGoOn()
    {
        var store = new InMemoryAdmissionStore(Options with { MaxRuns = 100 }, Time);
        var refused = 0;
        for (var i = 0; i < 1_000; i++)
        {
            var result = await store.ReserveAsync(Request() with { RunId = "run-" + i, RunBudget = new BudgetLimits(0.05m, 0, 0) });
            if (result.IsAdmitted)
            {
                await store.SettleAsync(result.Reservation, 0.01m, 10);
            }
            else
            {
                Assert.Equal(AdmissionRejection.StoreFull, result.Rejection);
                Assert.Equal("store_full", result.ErrorCode);
                Assert.NotNull(result.RetryAfter);
                refused++;
            }
        }

        Assert.Equal(100, store.RunCount);
        Assert.Equal(900, refused);

        // A tracked run goes on and keeps its spend: refusing new runs never resets a tracked one's budget.
        var tracked = await store.ReserveAsync(Request() with { RunId = "run-7", RunBudget = new BudgetLimits(0.05m, 0, 0) });
        Assert.True(tracked.IsAdmitted);
        Assert.Equal(0.01m, (await store.GetRunStateAsync("run-7"))!.SpentUsd);
        await store.SettleAsync(tracked.Reservation, 0.01m, 10);

        // Idle runs are swept when full, making room again.
        Time.Advance(Options.RunIdleExpiry);
        Assert.True((await store.ReserveAsync(Request() with { RunId = "after-idle" })).IsAdmitted);
        Assert.Equal(1, store.RunCount);
    }

    [Fact]
    public async Task LoopGuard_ManyDistinctRequestsInOneRun_AreBounded_AndALoopIsStillCaught()
    {
        var store = (InMemoryAdmissionStore)Store;
        AdmissionRequest Call(string hash) => Request() with { RunId = "long-run", RequestHash = hash, RunMaxRepeats = 3 };
        var loops = 0;
        AdmissionResult? last = null;
        for (var i = 0; i < 10_000; i++)
        {
            var result = await store.ReserveAsync(Call("distinct-" + i));
            Assert.True(result.IsAdmitted);
            await store.SettleAsync(result.Reservation, 0, 1);
            if (i % 10 == 0)
            {
                last = await store.ReserveAsync(Call("the-loop"));
                if (last.IsAdmitted)
                {
                    await store.SettleAsync(last.Reservation, 0, 1);
                    loops++;
                }
            }
        }

        // The loop recurs every 10 distinct requests, within the 64 counted, so it stays counted throughout.
        Assert.InRange(store.RepeatHashCount("long-run"), 1, 64);
        Assert.Equal(3, loops);
        Assert.Equal(AdmissionRejection.LoopDetected, last!.Rejection);
    }

    [Fact]
    public async Task Settle_ReservationFromAnotherStore_Throws()
    {
        var other = NewStore();
        var result = await other.ReserveAsync(Request());

        await Assert.ThrowsAsync<ArgumentException>(async () => await Store.SettleAsync(result.Reservation!, 0, 0));
    }

    protected override IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider) =>
        new InMemoryAdmissionStore(options, timeProvider);
}
