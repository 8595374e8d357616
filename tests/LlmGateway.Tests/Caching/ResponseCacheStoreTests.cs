using System.Collections.Concurrent;
using LlmGateway.Accounting;
using LlmGateway.Caching;
using LlmGateway.Configuration;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Caching;

/// <summary>The two tiers: memory in front of a shared <see cref="IDistributedCache"/> (here one the test controls).</summary>
public sealed class ResponseCacheStoreTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(50);
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly FakeLogger<ResponseCacheStore> _logger = new();
    private readonly SharedTier _shared = new();

    private ResponseCacheStore NewStore(TimeSpan? timeout = null) =>
        new(new MemoryCacheTier(() => 1 << 20, _clock), _shared, timeout ?? Timeout, _clock, _logger);

    private CachedAnswer Answer(TimeSpan ttl, string text = "answer")
    {
        var now = _clock.GetUtcNow();
        return new CachedAnswer(LlmEndpoint.ChatCompletions, "mock-small", CachedBodyKind.Json, System.Text.Encoding.UTF8.GetBytes(text),
            new TokenUsage(10, 0, 5, 0), 0.00002m, now, now + ttl);
    }

    private IEnumerable<string?> Events => _logger.Collector.GetSnapshot().Select(r => r.Id.Name);

    [Fact]
    public async Task Hit_InMemory_MakesNoSharedTierCall()
    {
        var store = NewStore();
        await store.SetAsync("k", Answer(TimeSpan.FromMinutes(1)));

        var hit = await store.GetAsync("k", CancellationToken.None);

        Assert.NotNull(hit);
        Assert.Equal((1, 0), (_shared.Sets, _shared.Gets));
    }

    [Fact]
    public async Task TwoStores_ShareEntriesThroughTheSharedTier_AndTheSecondKeepsItInMemory()
    {
        var a = NewStore();
        var b = NewStore();
        var answer = Answer(TimeSpan.FromMinutes(1));
        await a.SetAsync("k", answer);

        var first = await b.GetAsync("k", CancellationToken.None);
        var second = await b.GetAsync("k", CancellationToken.None);

        Assert.Equal(answer.Body, first!.Body);
        Assert.Same(first, second);
        Assert.Equal(1, _shared.Gets);
        Assert.Equal(1, b.Memory.Count);
    }

    [Fact]
    public async Task Set_GivesTheSharedTierTheAnswersOwnExpiry()
    {
        var answer = Answer(TimeSpan.FromSeconds(10));
        _clock.Advance(TimeSpan.FromSeconds(3));

        await NewStore().SetAsync("k", answer);

        Assert.Equal(TimeSpan.FromSeconds(7), _shared.LastOptions!.AbsoluteExpirationRelativeToNow);
        Assert.Null(_shared.LastOptions.SlidingExpiration);
    }

    [Fact]
    public async Task FilledFromTheSharedTier_ExpiresAtTheAnswersOwnExpiry_NotAFreshTtl()
    {
        await NewStore().SetAsync("k", Answer(TimeSpan.FromSeconds(10)));
        _clock.Advance(TimeSpan.FromSeconds(8));
        var b = NewStore();
        Assert.NotNull(await b.GetAsync("k", CancellationToken.None));

        _clock.Advance(TimeSpan.FromSeconds(2));

        // The shared tier here still holds the value (a shared store has its own clock): neither tier serves it.
        Assert.Null(await b.GetAsync("k", CancellationToken.None));
        Assert.Equal((0, 2), (b.Memory.Count, _shared.Gets));
    }

    [Theory]
    [InlineData("truncate")]
    [InlineData("flip")]
    [InlineData("garbage")]
    public async Task DamagedValueInTheSharedTier_IsAMiss_RemovedAndLogged_NeverKeptInMemory(string damage)
    {
        var value = CachedAnswerSerializer.Serialize(Answer(TimeSpan.FromMinutes(1)));
        _shared.Values["k"] = damage switch
        {
            "truncate" => value[..^10],
            "flip" => Flip(value, value.Length - 3),
            _ => "not a cache entry"u8.ToArray(),
        };
        var store = NewStore();

        Assert.Null(await store.GetAsync("k", CancellationToken.None));

        Assert.False(_shared.Values.ContainsKey("k"));
        Assert.Equal(0, store.Memory.Count);
        Assert.Contains("CacheEntryCorrupt", Events);
    }

    [Fact]
    public async Task SharedTierFailing_LookupIsAMiss_StoreStillFillsMemory_BothLogged()
    {
        _shared.Mode = SharedTierMode.Fail;
        var store = NewStore();

        Assert.Null(await store.GetAsync("k", CancellationToken.None));
        await store.SetAsync("k", Answer(TimeSpan.FromMinutes(1)));

        Assert.NotNull(await store.GetAsync("k", CancellationToken.None));
        Assert.Equal(2, Events.Count(e => e == "CacheStoreFailed"));
    }

    [Theory]
    [InlineData(SharedTierMode.IgnoreToken)]
    [InlineData(SharedTierMode.HonorToken)]
    public async Task SharedTierNotAnswering_EveryCallEndsAtTheStoreTimeout(SharedTierMode mode)
    {
        _shared.Mode = mode;
        var store = NewStore();

        // A guard against hanging the run, far above the 50 ms under test; nothing here measures time.
        var lookup = await store.GetAsync("k", CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        await store.SetAsync("k", Answer(TimeSpan.FromMinutes(1))).AsTask().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Null(lookup);
        var failures = _logger.Collector.GetSnapshot().Where(r => r.Id.Name == "CacheStoreFailed").ToList();
        Assert.Equal(2, failures.Count);
        Assert.All(failures, r => Assert.Contains("did not answer within 50 ms", r.Message, StringComparison.Ordinal));
        Assert.Equal(2, _shared.Tokens.Count);
        Assert.All(_shared.Tokens, token => Assert.True(token.IsCancellationRequested));
    }

    [Fact]
    public async Task CallerCancelled_LookupThrows_AndIsNotAStoreFailure()
    {
        _shared.Mode = SharedTierMode.HonorToken;
        using var aborted = new CancellationTokenSource();
        // A store timeout the caller's cancellation surely comes before.
        var lookup = NewStore(TimeSpan.FromHours(1)).GetAsync("k", aborted.Token).AsTask();

        await aborted.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => lookup);
        Assert.DoesNotContain("CacheStoreFailed", Events);
    }

    [Fact]
    public async Task WithoutASharedTier_AnswersStayInMemory()
    {
        var store = new ResponseCacheStore(new MemoryCacheTier(() => 1 << 20, _clock), null, Timeout, _clock, _logger);
        await store.SetAsync("k", Answer(TimeSpan.FromSeconds(10)));

        Assert.NotNull(await store.GetAsync("k", CancellationToken.None));
        _clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Null(await store.GetAsync("k", CancellationToken.None));
    }

    private static byte[] Flip(byte[] value, int index)
    {
        var copy = value.ToArray();
        copy[index] ^= 0x20;
        return copy;
    }

    public enum SharedTierMode
    {
        Answer,
        Fail,
        IgnoreToken,
        HonorToken,
    }

    /// <summary>A shared tier that keeps values without expiring them and counts its calls.</summary>
    private sealed class SharedTier : IDistributedCache
    {
        private int _gets;
        private int _sets;

        public ConcurrentDictionary<string, byte[]> Values { get; } = new(StringComparer.Ordinal);

        public SharedTierMode Mode { get; set; }

        public DistributedCacheEntryOptions? LastOptions { get; private set; }

        public int Gets => Volatile.Read(ref _gets);

        public int Sets => Volatile.Read(ref _sets);

        /// <summary>The tokens the calls were given.</summary>
        public ConcurrentQueue<CancellationToken> Tokens { get; } = new();

        public async Task<byte[]?> GetAsync(string key, CancellationToken token = default)
        {
            Interlocked.Increment(ref _gets);
            await ActAsync(token);
            return Values.TryGetValue(key, out var value) ? value : null;
        }

        public async Task SetAsync(string key, byte[] value, DistributedCacheEntryOptions options, CancellationToken token = default)
        {
            Interlocked.Increment(ref _sets);
            LastOptions = options;
            await ActAsync(token);
            Values[key] = value;
        }

        public Task RemoveAsync(string key, CancellationToken token = default)
        {
            Values.TryRemove(key, out _);
            return Task.CompletedTask;
        }

        public Task RefreshAsync(string key, CancellationToken token = default) => Task.CompletedTask;

        public byte[]? Get(string key) => throw new NotSupportedException("the gateway calls the async methods only");

        public void Set(string key, byte[] value, DistributedCacheEntryOptions options) => throw new NotSupportedException();

        public void Refresh(string key) => throw new NotSupportedException();

        public void Remove(string key) => throw new NotSupportedException();

        private async Task ActAsync(CancellationToken token)
        {
            Tokens.Enqueue(token);
            switch (Mode)
            {
                case SharedTierMode.Fail:
                    throw new InvalidOperationException("the shared tier is down");
                case SharedTierMode.IgnoreToken:
                    await new TaskCompletionSource().Task;
                    break;
                case SharedTierMode.HonorToken:
                    await Task.Delay(System.Threading.Timeout.Infinite, token);
                    break;
            }
        }
    }
}
