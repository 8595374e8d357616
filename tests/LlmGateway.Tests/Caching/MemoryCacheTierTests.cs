using LlmGateway.Caching;
using LlmGateway.Configuration;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Caching;

public sealed class MemoryCacheTierTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));

    private CachedAnswer Answer(int bytes, TimeSpan ttl)
    {
        var now = _clock.GetUtcNow();
        return new CachedAnswer(LlmEndpoint.ChatCompletions, "m", CachedBodyKind.Json, new byte[bytes], default, 0.01m, now, now + ttl);
    }

    [Fact]
    public void Get_AtTheEntrysOwnExpiry_IsAMiss()
    {
        var tier = new MemoryCacheTier(() => 1 << 20, _clock);
        tier.Set("k", Answer(3, TimeSpan.FromSeconds(10)));

        _clock.Advance(TimeSpan.FromSeconds(10) - TimeSpan.FromTicks(1));
        Assert.NotNull(tier.Get("k"));
        _clock.Advance(TimeSpan.FromTicks(1));
        Assert.Null(tier.Get("k"));
        Assert.Equal((0, 0L), (tier.Count, tier.Bytes));
    }

    [Fact]
    public void Set_OfAnAnswerAlreadyExpired_KeepsNothing_AndDropsTheOldEntry()
    {
        var tier = new MemoryCacheTier(() => 1 << 20, _clock);
        tier.Set("k", Answer(3, TimeSpan.FromHours(1)));
        var stale = Answer(3, TimeSpan.FromSeconds(5));
        _clock.Advance(TimeSpan.FromSeconds(5));

        tier.Set("k", stale);

        Assert.Null(tier.Get("k"));
        Assert.Equal(0, tier.Count);
    }

    [Fact]
    public void OverTheByteBound_EvictsLeastRecentlyUsed()
    {
        var size = MemoryCacheTier.SizeOf("a", Answer(1000, TimeSpan.FromHours(1)));
        var tier = new MemoryCacheTier(() => 3 * size, _clock);
        tier.Set("a", Answer(1000, TimeSpan.FromHours(1)));
        tier.Set("b", Answer(1000, TimeSpan.FromHours(1)));
        tier.Set("c", Answer(1000, TimeSpan.FromHours(1)));
        tier.Get("a");

        tier.Set("d", Answer(1000, TimeSpan.FromHours(1)));

        Assert.Null(tier.Get("b"));
        Assert.NotNull(tier.Get("a"));
        Assert.NotNull(tier.Get("c"));
        Assert.NotNull(tier.Get("d"));
        Assert.Equal(3 * size, tier.Bytes);
    }

    [Fact]
    public void EntryLargerThanTheBound_IsNotStored_AndReplacesNothing()
    {
        var tier = new MemoryCacheTier(() => 1000, _clock);
        tier.Set("small", Answer(100, TimeSpan.FromHours(1)));

        tier.Set("big", Answer(1000, TimeSpan.FromHours(1)));

        Assert.Null(tier.Get("big"));
        Assert.NotNull(tier.Get("small"));
    }

    [Fact]
    public void Set_SameKey_ReplacesAndKeepsTheByteCount()
    {
        var tier = new MemoryCacheTier(() => 1 << 20, _clock);
        tier.Set("k", Answer(100, TimeSpan.FromHours(1)));
        var replacement = Answer(10, TimeSpan.FromHours(1));

        tier.Set("k", replacement);

        Assert.Same(replacement, tier.Get("k"));
        Assert.Equal(1, tier.Count);
        Assert.Equal(MemoryCacheTier.SizeOf("k", replacement), tier.Bytes);
    }

    [Fact]
    public void ALowerBound_FromAConfigReload_AppliesOnTheNextStore()
    {
        var size = MemoryCacheTier.SizeOf("a", Answer(1000, TimeSpan.FromHours(1)));
        var bound = 4 * size;
        var tier = new MemoryCacheTier(() => bound, _clock);
        tier.Set("a", Answer(1000, TimeSpan.FromHours(1)));
        tier.Set("b", Answer(1000, TimeSpan.FromHours(1)));
        tier.Set("c", Answer(1000, TimeSpan.FromHours(1)));

        bound = 2 * size;
        tier.Set("d", Answer(1000, TimeSpan.FromHours(1)));

        Assert.Equal(2, tier.Count);
        Assert.NotNull(tier.Get("c"));
        Assert.NotNull(tier.Get("d"));
    }
}
