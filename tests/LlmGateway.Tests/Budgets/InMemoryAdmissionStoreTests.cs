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
    public async Task Settle_ReservationFromAnotherStore_Throws()
    {
        var other = NewStore();
        var result = await other.ReserveAsync(Request());

        await Assert.ThrowsAsync<ArgumentException>(async () => await Store.SettleAsync(result.Reservation!, 0, 0));
    }

    protected override IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider) =>
        new InMemoryAdmissionStore(options, timeProvider);
}
