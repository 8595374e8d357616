using LlmGateway.Tests.Shared;
using LlmGateway.Tools;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Tools;

/// <summary>The semantics every <see cref="IIdempotencyStore"/> must have, run once per store by the subclasses.</summary>
public abstract class IdempotencyStoreContractTests : IDisposable
{
    protected static readonly TimeSpan ClaimTtl = TimeSpan.FromSeconds(30);
    protected static readonly TimeSpan Ttl = TimeSpan.FromMinutes(10);

    private readonly List<IIdempotencyStore> _stores = [];
    private IIdempotencyStore? _store;

    protected string Prefix { get; } = "test-" + Guid.NewGuid().ToString("N")[..12] + ":";

    protected IIdempotencyStore Store => _store ??= NewStore();

    public void Dispose()
    {
        foreach (var store in _stores)
        {
            (store as IDisposable)?.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    [StoreFact]
    public async Task Begin_NewKey_Claims_ThenRepeatSeesInFlight()
    {
        var claim = await Store.TryBeginAsync("k1", "hash-a", ClaimTtl);
        var repeat = await Store.TryBeginAsync("k1", "hash-a", ClaimTtl);

        Assert.Equal(IdempotencyState.Claimed, claim.State);
        Assert.NotNull(claim.Token);
        Assert.Equal(IdempotencyState.InFlight, repeat.State);
        Assert.Null(repeat.Token);
    }

    [StoreFact]
    public async Task Complete_ThenRepeat_GetsTheStoredResponse()
    {
        var claim = await Store.TryBeginAsync("k2", "hash-a", ClaimTtl);
        var response = new StoredToolResponse(201, [new("Content-Type", ["application/json"]), new("X-Multi", ["a", "b"])], "{\"id\":7}"u8.ToArray());
        await Store.CompleteAsync("k2", claim, response, Ttl);

        var repeat = await Store.TryBeginAsync("k2", "hash-a", ClaimTtl);

        Assert.Equal(IdempotencyState.Completed, repeat.State);
        Assert.Equal(201, repeat.Response!.Status);
        Assert.Equal("{\"id\":7}"u8.ToArray(), repeat.Response.Body);
        Assert.Equal(["a", "b"], repeat.Response.Headers.Single(h => h.Key == "X-Multi").Value);
    }

    [StoreFact]
    public async Task Complete_WithoutBody_ReplaysStatusAndHeadersOnly()
    {
        var claim = await Store.TryBeginAsync("k3", "hash-a", ClaimTtl);
        await Store.CompleteAsync("k3", claim, new StoredToolResponse(200, [], null), Ttl);

        var repeat = await Store.TryBeginAsync("k3", "hash-a", ClaimTtl);

        Assert.Equal(IdempotencyState.Completed, repeat.State);
        Assert.Null(repeat.Response!.Body);
    }

    [StoreFact]
    public async Task SameKey_OtherRequest_IsKeyReused_InFlightOrCompleted()
    {
        var claim = await Store.TryBeginAsync("k4", "hash-a", ClaimTtl);
        Assert.Equal(IdempotencyState.KeyReused, (await Store.TryBeginAsync("k4", "hash-b", ClaimTtl)).State);

        await Store.CompleteAsync("k4", claim, new StoredToolResponse(200, [], []), Ttl);
        Assert.Equal(IdempotencyState.KeyReused, (await Store.TryBeginAsync("k4", "hash-b", ClaimTtl)).State);
    }

    [StoreFact]
    public async Task Abandon_LetsTheNextCallerClaim_AndOnlyTheHolderCanAbandonOrComplete()
    {
        var claim = await Store.TryBeginAsync("k5", "hash-a", ClaimTtl);
        var stranger = claim with { Token = "not-the-token" };
        await Store.AbandonAsync("k5", stranger);
        await Store.CompleteAsync("k5", stranger, new StoredToolResponse(500, [], []), Ttl);
        Assert.Equal(IdempotencyState.InFlight, (await Store.TryBeginAsync("k5", "hash-a", ClaimTtl)).State);

        await Store.AbandonAsync("k5", claim);
        var next = await Store.TryBeginAsync("k5", "hash-a", ClaimTtl);

        Assert.Equal(IdempotencyState.Claimed, next.State);
        Assert.NotEqual(claim.Token, next.Token);
    }

    [StoreFact]
    public async Task ExpiredClaim_CanBeClaimedAgain_AndItsLateCompletionIsIgnored()
    {
        var claim = await Store.TryBeginAsync("k6", "hash-a", TimeSpan.FromMilliseconds(100));
        await AdvanceAsync(TimeSpan.FromMilliseconds(300));

        var next = await Store.TryBeginAsync("k6", "hash-a", ClaimTtl);
        await Store.CompleteAsync("k6", claim, new StoredToolResponse(200, [], "late"u8.ToArray()), Ttl);

        Assert.Equal(IdempotencyState.Claimed, next.State);
        Assert.Equal(IdempotencyState.InFlight, (await Store.TryBeginAsync("k6", "hash-a", ClaimTtl)).State);
    }

    [StoreFact]
    public async Task ConcurrentBegins_ExactlyOneClaims()
    {
        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Store.TryBeginAsync("k7", "hash-a", ClaimTtl).AsTask()));

        Assert.Equal(1, results.Count(r => r.State == IdempotencyState.Claimed));
        Assert.Equal(19, results.Count(r => r.State == IdempotencyState.InFlight));
    }

    protected IIdempotencyStore NewStore() => Track(CreateStore());

    /// <summary>A store disposed with the test.</summary>
    protected IIdempotencyStore Track(IIdempotencyStore store)
    {
        _stores.Add(store);
        return store;
    }

    protected abstract IIdempotencyStore CreateStore();

    /// <summary>Lets time pass for the store: the manual clock for the in-memory store, real time for Redis.</summary>
    protected abstract Task AdvanceAsync(TimeSpan time);
}

public sealed class InMemoryIdempotencyStoreTests : IdempotencyStoreContractTests
{
    private readonly FakeTimeProvider _time = new();

    protected override IIdempotencyStore CreateStore() => new InMemoryIdempotencyStore(_time);

    protected override Task AdvanceAsync(TimeSpan time)
    {
        _time.Advance(time);
        return Task.CompletedTask;
    }
}

[RequiresRedisServer]
public sealed class RedisIdempotencyStoreTests(RedisServerFixture redis) : IdempotencyStoreContractTests, IClassFixture<RedisServerFixture>
{
    [RedisFact]
    public async Task TwoReplicas_OneRedis_ShareClaimsAndResponses()
    {
        var a = Store;
        var b = NewStore();
        var claim = await a.TryBeginAsync("shared", "hash-a", ClaimTtl);
        Assert.Equal(IdempotencyState.InFlight, (await b.TryBeginAsync("shared", "hash-a", ClaimTtl)).State);

        await a.CompleteAsync("shared", claim, new StoredToolResponse(200, [], "done"u8.ToArray()), Ttl);

        Assert.Equal("done"u8.ToArray(), (await b.TryBeginAsync("shared", "hash-a", ClaimTtl)).Response!.Body);
    }

    /// <summary>
    /// A claim whose caller gave up (Redis paused past the store timeout: the caller was told the store is unavailable
    /// and ran nothing) is given back once Redis runs it, so the retry executes at once instead of being refused as in
    /// progress until the claim's TTL. Without the give-back the retry sees InFlight for the whole 30 s.
    /// </summary>
    [RedisFact]
    public async Task Claim_WhoseCallerGaveUp_IsGivenBackWhenRedisRunsIt_SoTheRetryExecutes()
    {
        var impatient = Track(new RedisIdempotencyStore(redis.ConnectionString, Prefix, TimeSpan.FromMilliseconds(200)));
        Assert.Equal(IdempotencyState.Claimed, (await Store.TryBeginAsync("warm", "hash-a", ClaimTtl)).State);
        Assert.Equal(IdempotencyState.Claimed, (await impatient.TryBeginAsync("warm-too", "hash-a", ClaimTtl)).State);

        Assert.StartsWith("+OK", redis.TryCommand("CLIENT PAUSE 1000 WRITE"), StringComparison.Ordinal);
        await Assert.ThrowsAsync<IdempotencyStoreUnavailableException>(async () => await impatient.TryBeginAsync("late", "hash-a", ClaimTtl));

        // Once the pause ends the claim runs, then its give-back; the retry (another replica's store) must claim the key.
        await Task.Delay(1000);
        var retry = await Store.TryBeginAsync("late", "hash-a", ClaimTtl);
        for (var attempt = 0; retry.State == IdempotencyState.InFlight && attempt < 40; attempt++)
        {
            await Task.Delay(50);
            retry = await Store.TryBeginAsync("late", "hash-a", ClaimTtl);
        }

        Assert.Equal(IdempotencyState.Claimed, retry.State);
    }

    protected override IIdempotencyStore CreateStore()
    {
        if (!redis.IsRunning)
        {
            redis.Start();
        }

        return new RedisIdempotencyStore(redis.ConnectionString, Prefix, TimeSpan.FromSeconds(2));
    }

    protected override Task AdvanceAsync(TimeSpan time) => Task.Delay(time);
}
