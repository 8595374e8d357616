using LlmGateway.Tools;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Tools;

/// <summary>The in-memory idempotency store is bounded, and being full never makes a call run twice.</summary>
public sealed class InMemoryIdempotencyStoreBoundsTests
{
    private static readonly TimeSpan ClaimTtl = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Ttl = TimeSpan.FromMinutes(10);
    private readonly FakeTimeProvider _time = new();

    [Fact]
    public async Task Flood_OfNewKeys_StaysWithinMaxEntries_AndTheRestAreRefused()
    {
        var store = new InMemoryIdempotencyStore(_time, maxEntries: 100);
        var refused = 0;
        for (var i = 0; i < 10_000; i++)
        {
            try
            {
                var claim = await store.TryBeginAsync("key-" + i, "hash", ClaimTtl);
                await store.CompleteAsync("key-" + i, claim, new StoredToolResponse(200, [], "ok"u8.ToArray()), Ttl);
            }
            catch (IdempotencyStoreFullException)
            {
                refused++;
            }
        }

        Assert.Equal(100, store.Count);
        Assert.Equal(9_900, refused);
    }

    [Fact]
    public async Task Full_KeysAlreadyHeld_AreStillAnswered()
    {
        var store = new InMemoryIdempotencyStore(_time, maxEntries: 2);
        var done = await store.TryBeginAsync("done", "hash", ClaimTtl);
        await store.CompleteAsync("done", done, new StoredToolResponse(201, [], "refund-1"u8.ToArray()), Ttl);
        var running = await store.TryBeginAsync("running", "hash", ClaimTtl);

        await Assert.ThrowsAsync<IdempotencyStoreFullException>(async () => await store.TryBeginAsync("new", "hash", ClaimTtl));

        var repeat = await store.TryBeginAsync("done", "hash", ClaimTtl);
        Assert.Equal(IdempotencyState.Completed, repeat.State);
        Assert.Equal("refund-1"u8.ToArray(), repeat.Response!.Body);
        Assert.Equal(IdempotencyState.InFlight, (await store.TryBeginAsync("running", "hash", ClaimTtl)).State);
        Assert.Equal(IdempotencyState.KeyReused, (await store.TryBeginAsync("done", "other", ClaimTtl)).State);

        await store.CompleteAsync("running", running, new StoredToolResponse(200, [], []), Ttl);
        Assert.Equal(IdempotencyState.Completed, (await store.TryBeginAsync("running", "hash", ClaimTtl)).State);
    }

    [Fact]
    public async Task Full_ExpiredEntries_AreSweptToMakeRoom_AndAbandonFreesItsSlot()
    {
        var store = new InMemoryIdempotencyStore(_time, maxEntries: 2);
        var a = await store.TryBeginAsync("a", "hash", ClaimTtl);
        await store.CompleteAsync("a", a, new StoredToolResponse(200, [], []), TimeSpan.FromSeconds(5));
        var b = await store.TryBeginAsync("b", "hash", ClaimTtl);
        await Assert.ThrowsAsync<IdempotencyStoreFullException>(async () => await store.TryBeginAsync("c", "hash", ClaimTtl));

        _time.Advance(TimeSpan.FromSeconds(6));
        Assert.Equal(IdempotencyState.Claimed, (await store.TryBeginAsync("c", "hash", ClaimTtl)).State);

        await store.AbandonAsync("b", b);
        Assert.Equal(IdempotencyState.Claimed, (await store.TryBeginAsync("d", "hash", ClaimTtl)).State);
        Assert.Equal(2, store.Count);
    }

    [Fact]
    public async Task Bytes_AResponseThatDoesNotFit_IsKeptWithoutItsBody_SoItsRepeatIsStillReplayed()
    {
        var maxBytes = 4 * 1024;
        var store = new InMemoryIdempotencyStore(_time, maxEntries: 100, maxBytes: maxBytes);
        var claim = await store.TryBeginAsync("big", "hash", ClaimTtl);
        await store.CompleteAsync("big", claim, new StoredToolResponse(200, [new("Content-Type", ["application/json"])], new byte[64 * 1024]), Ttl);

        var repeat = await store.TryBeginAsync("big", "hash", ClaimTtl);

        Assert.Equal(IdempotencyState.Completed, repeat.State);
        Assert.Equal(200, repeat.Response!.Status);
        Assert.Null(repeat.Response.Body);
        Assert.InRange(store.Bytes, 1, maxBytes);
    }

    [Fact]
    public async Task Bytes_StayWithinMaxBytes_UnderManyStoredResponses()
    {
        var maxBytes = 64 * 1024;
        var store = new InMemoryIdempotencyStore(_time, maxEntries: 1_000_000, maxBytes: maxBytes);
        for (var i = 0; i < 1_000; i++)
        {
            try
            {
                var claim = await store.TryBeginAsync("key-" + i, "hash", ClaimTtl);
                await store.CompleteAsync("key-" + i, claim, new StoredToolResponse(200, [], new byte[1000]), Ttl);
            }
            catch (IdempotencyStoreFullException)
            {
            }

            Assert.InRange(store.Bytes, 0, maxBytes);
        }

        Assert.InRange(store.Count, 1, 999);
    }
}
