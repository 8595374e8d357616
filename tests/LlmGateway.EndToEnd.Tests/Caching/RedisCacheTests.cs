using System.Net;
using LlmGateway.Caching;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>
/// The cache shared through one real redis-server by two gateways: replica A in the test process, replica B a separate
/// <c>dotnet LlmGateway.dll</c> process or another in-process gateway. Each keeps a memory tier in front of Redis (RedisCache:
/// one hash per entry, its value in the field <c>data</c>). Corrupted and truncated entries in Redis are misses, replaced,
/// never served; a gateway's memory tier serves what it holds with Redis gone, and never past an entry's TTL.
/// </summary>
[RequiresRedisServer]
public sealed class RedisCacheTests : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly RedisServerFixture _redis;
    private readonly string _prefix = "llmgw-" + Guid.NewGuid().ToString("N") + ":";
    private MockLlmServer _mock = null!;
    private GatewayServer _a = null!;

    public RedisCacheTests(RedisServerFixture redis) => _redis = redis;

    public async Task InitializeAsync()
    {
        if (!_redis.IsRunning)
        {
            _redis.Start();
        }

        _mock = await MockLlmServer.StartAsync();
        _a = await GatewayServer.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl, _redis.ConnectionString, _prefix));
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _mock.DisposeAsync();
    }

    private static async Task<(HttpStatusCode Status, string? Cache, string Body)> SendAsync(HttpClient client, string body, params (string, string)[] headers)
    {
        using var response = await client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice, headers));
        var cache = response.Headers.TryGetValues("X-Gateway-Cache", out var values) ? values.Single() : null;
        return (response.StatusCode, cache, await response.Content.ReadAsStringAsync());
    }

    [RedisFact]
    public async Task MissOnOneReplica_IsAHitOnTheOther()
    {
        await using var b = await GatewayProcess.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl, _redis.ConnectionString, _prefix));

        var onA = await SendAsync(_a.Client, CacheConfigs.Chat("shared answer"));

        // A stores the answer as its call ends, just after the body reached the client.
        using var connection = await ConnectionMultiplexer.ConnectAsync(_redis.ConnectionString);
        var server = connection.GetServer(connection.GetEndPoints()[0]);
        await Http.EventuallyAsync(() => server.Keys(pattern: _prefix + "cache:*").Any() ? "stored" : null, "the entry in Redis");
        var onB = await SendAsync(b.Client, CacheConfigs.Chat("shared answer"));

        Assert.Equal("MISS", onA.Cache);
        Assert.True(onB.Cache == "HIT", $"B answered {onB.Cache}; its output: {b.Output}");
        Assert.Equal(onA.Body, onB.Body);
        Assert.Equal(1, _mock.Log.CountFor("/v1/chat/completions"));
    }

    [RedisFact]
    public Task TruncatedEntryInRedis_IsAMiss_ReplacedAndNeverServed() => DamagedEntryIsAMissAsync("truncate");

    [RedisFact]
    public Task CorruptedEntryInRedis_IsAMiss_ReplacedAndNeverServed() => DamagedEntryIsAMissAsync("flip");

    [RedisFact]
    public Task ForeignValueInRedis_IsAMiss_ReplacedAndNeverServed() => DamagedEntryIsAMissAsync("garbage");

    private async Task DamagedEntryIsAMissAsync(string damage)
    {
        var first = await SendAsync(_a.Client, CacheConfigs.Chat("damage " + damage));
        Assert.Equal("MISS", first.Cache);

        using var connection = await ConnectionMultiplexer.ConnectAsync(_redis.ConnectionString);
        var database = connection.GetDatabase();
        var server = connection.GetServer(connection.GetEndPoints()[0]);
        var key = await Http.EventuallyAsync(() => server.Keys(pattern: _prefix + "cache:*").Select(k => (string?)k).SingleOrDefault(), "the entry in Redis");
        byte[] value = (await database.HashGetAsync(key, "data"))!;
        byte[] damaged = damage switch
        {
            "truncate" => value[..(value.Length - 10)],
            "flip" => Flip(value, value.Length - 5),
            _ => "not a cache entry"u8.ToArray(),
        };
        await database.HashSetAsync(key, "data", damaged);

        // A holds its own copy in memory; a replica that has not seen the answer reads the damaged one from Redis.
        await using var b = await GatewayServer.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl, _redis.ConnectionString, _prefix));
        var afterDamage = await SendAsync(b.Client, CacheConfigs.Chat("damage " + damage));
        Assert.Equal((HttpStatusCode.OK, "MISS"), (afterDamage.Status, afterDamage.Cache));
        Assert.Equal(first.Body, afterDamage.Body);
        Assert.Equal(2, _mock.Log.CountFor("/v1/chat/completions"));
        Assert.Contains(b.Logs.GetSnapshot(), r => r.Id.Name == "CacheEntryCorrupt");

        // Replaced by the fresh answer (stored as the call ends, just after its body reached the client): intact again, and served.
        var restored = await Http.EventuallyAsync(async () =>
        {
            byte[]? stored = await database.HashGetAsync(key, "data");
            return stored is not null && !stored.AsSpan().SequenceEqual(damaged) ? (int?)stored.Length : null;
        }, "the entry to be replaced");
        Assert.Equal(value.Length, restored);
        await using var c = await GatewayServer.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl, _redis.ConnectionString, _prefix));
        Assert.Equal("HIT", (await SendAsync(c.Client, CacheConfigs.Chat("damage " + damage))).Cache);
        Assert.Equal(2, _mock.Log.CountFor("/v1/chat/completions"));
    }

    [RedisFact]
    public async Task MemoryTier_AfterTheFirstFill_ServesHitsWithRedisStopped()
    {
        // Admissions go to the same Redis; Allow lets calls through while it is gone, so only the cache is under test.
        var config = CacheConfigs.Enabled(_mock.BaseUrl, _redis.ConnectionString, _prefix, extraStore: ", \"OnUnavailable\": \"Allow\"");
        await using var b = await GatewayServer.StartAsync(config);
        var onA = await SendAsync(_a.Client, CacheConfigs.Chat("kept in memory"));
        await WaitForEntriesAsync(1);
        var fill = await SendAsync(b.Client, CacheConfigs.Chat("kept in memory"));
        Assert.Equal(("MISS", "HIT"), (onA.Cache, fill.Cache));

        _redis.Stop();
        try
        {
            var fromMemory = await SendAsync(b.Client, CacheConfigs.Chat("kept in memory"));
            var unseen = await SendAsync(b.Client, CacheConfigs.Chat("never cached"));

            Assert.Equal((HttpStatusCode.OK, "HIT"), (fromMemory.Status, fromMemory.Cache));
            Assert.Equal(onA.Body, fromMemory.Body);
            // The same gateway cannot reach Redis: a lookup there is a miss, logged, and the call still answers.
            Assert.Equal((HttpStatusCode.OK, "MISS"), (unseen.Status, unseen.Cache));
            Assert.Contains(b.Logs.GetSnapshot(), r => r.Id.Name == "CacheStoreFailed" && r.GetStructuredStateValue("Operation") == "lookup");
            Assert.Equal(2, _mock.Log.CountFor("/v1/chat/completions"));
        }
        finally
        {
            _redis.Start();
        }
    }

    [RedisFact]
    public async Task Ttl_IsHonouredOnEveryTier_ByTheGatewaysClock()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()));
        var config = CacheConfigs.Enabled(_mock.BaseUrl, _redis.ConnectionString, _prefix, ttl: "00:00:30");
        await using var a = await GatewayServer.StartAsync(config, clock);
        await using var b = await GatewayServer.StartAsync(config, clock);
        await SendAsync(a.Client, CacheConfigs.Chat("short-lived"));
        await WaitForEntriesAsync(1);
        clock.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal("HIT", (await SendAsync(a.Client, CacheConfigs.Chat("short-lived"))).Cache);
        Assert.Equal("HIT", (await SendAsync(b.Client, CacheConfigs.Chat("short-lived"))).Cache);

        clock.Advance(TimeSpan.FromSeconds(1));

        // Redis, on its own clock, still holds the entry; yet A's memory (where it was stored), B's memory (filled
        // from Redis a second before) and the copy in Redis are all past the entry's TTL: nothing serves it.
        // no-store: the misses leave nothing new behind to be found instead.
        Assert.Equal(1, await RedisKeyCountAsync());
        var onA = await SendAsync(a.Client, CacheConfigs.Chat("short-lived"), ("X-Gateway-Cache", "no-store"));
        var onB = await SendAsync(b.Client, CacheConfigs.Chat("short-lived"), ("X-Gateway-Cache", "no-store"));
        Assert.Equal(("MISS", "MISS"), (onA.Cache, onB.Cache));
        Assert.Equal(3, _mock.Log.CountFor("/v1/chat/completions"));
    }

    [RedisFact]
    public async Task TheApplicationsMemoryDistributedCache_DoesNotReplaceRedis()
    {
        await using var b = await GatewayServer.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl, _redis.ConnectionString, _prefix),
            services: static s => s.AddDistributedMemoryCache());

        Assert.IsType<MemoryDistributedCache>(b.Services.GetRequiredService<IDistributedCache>());
        Assert.IsType<GatewayRedisCache>(b.Services.GetRequiredService<ResponseCacheStore>().Shared);
        await SendAsync(_a.Client, CacheConfigs.Chat("through redis"));
        await WaitForEntriesAsync(1);
        Assert.Equal("HIT", (await SendAsync(b.Client, CacheConfigs.Chat("through redis"))).Cache);
    }

    private async Task<int> RedisKeyCountAsync()
    {
        using var connection = await ConnectionMultiplexer.ConnectAsync(_redis.ConnectionString);
        return connection.GetServer(connection.GetEndPoints()[0]).Keys(pattern: _prefix + "cache:*").Count();
    }

    private Task WaitForEntriesAsync(int count) =>
        Http.EventuallyAsync(async () => await RedisKeyCountAsync() >= count ? (bool?)true : null, "the entry in Redis");

    [RedisFact]
    public async Task RecordingsAreShared_ReplayOnTheOtherReplica()
    {
        using (var recorded = await _a.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "shared step"), CacheConfigs.Alice, ("X-Run-Id", "rec-shared"), ("X-Gateway-Record", "true"))))
        {
            recorded.EnsureSuccessStatusCode();
        }

        await using var b = await GatewayProcess.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl, _redis.ConnectionString, _prefix));
        using var replayed = await b.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "shared step"), CacheConfigs.Alice, ("X-Run-Id", "replay-shared"), ("X-Gateway-Replay-Of", "rec-shared")));

        Assert.Equal(HttpStatusCode.OK, replayed.StatusCode);
        Assert.Equal(1, _mock.Log.CountFor("/v1/chat/completions"));
    }

    private static byte[] Flip(byte[] value, int index)
    {
        var copy = value.ToArray();
        copy[index] ^= 0x20;
        return copy;
    }
}
