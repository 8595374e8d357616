using LlmGateway.Caching;
using LlmGateway.Tests.Shared;

namespace LlmGateway.Tests.Caching;

public sealed class InMemoryResponseCacheStoreTests
{
    private readonly ManualTimeProvider _clock = new();

    [Fact]
    public async Task Get_AfterTtl_IsMiss()
    {
        var store = new InMemoryResponseCacheStore(() => 1 << 20, _clock);
        await store.SetAsync("k", [1, 2, 3], TimeSpan.FromSeconds(10));

        _clock.Advance(TimeSpan.FromSeconds(9));
        Assert.NotNull(await store.GetAsync("k"));
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(await store.GetAsync("k"));
        Assert.Equal(0, store.Bytes);
    }

    [Fact]
    public async Task OverTheByteBound_EvictsLeastRecentlyUsed()
    {
        // Each entry: 1000 bytes of value, 1 of key, 96 of overhead.
        var store = new InMemoryResponseCacheStore(() => 3 * 1097, _clock);
        await store.SetAsync("a", new byte[1000], TimeSpan.FromHours(1));
        await store.SetAsync("b", new byte[1000], TimeSpan.FromHours(1));
        await store.SetAsync("c", new byte[1000], TimeSpan.FromHours(1));
        await store.GetAsync("a");

        await store.SetAsync("d", new byte[1000], TimeSpan.FromHours(1));

        Assert.Null(await store.GetAsync("b"));
        Assert.NotNull(await store.GetAsync("a"));
        Assert.NotNull(await store.GetAsync("c"));
        Assert.NotNull(await store.GetAsync("d"));
        Assert.True(store.Bytes <= 3 * 1097);
    }

    [Fact]
    public async Task EntryLargerThanTheBound_IsNotStored_AndReplacesNothing()
    {
        var store = new InMemoryResponseCacheStore(() => 500, _clock);
        await store.SetAsync("small", new byte[100], TimeSpan.FromHours(1));

        await store.SetAsync("big", new byte[1000], TimeSpan.FromHours(1));

        Assert.Null(await store.GetAsync("big"));
        Assert.NotNull(await store.GetAsync("small"));
    }

    [Fact]
    public async Task Set_SameKey_ReplacesAndKeepsTheByteCount()
    {
        var store = new InMemoryResponseCacheStore(() => 1 << 20, _clock);
        await store.SetAsync("k", new byte[100], TimeSpan.FromHours(1));
        await store.SetAsync("k", new byte[10], TimeSpan.FromHours(1));

        Assert.Equal(10, (await store.GetAsync("k"))!.Length);
        Assert.Equal(1, store.Count);
        Assert.Equal(10 + 1 + 96, store.Bytes);
    }
}
