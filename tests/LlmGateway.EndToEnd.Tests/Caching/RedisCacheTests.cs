using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using StackExchange.Redis;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>
/// The cache shared through one real redis-server by two gateways: replica A in the test process, replica B a separate
/// <c>dotnet LlmGateway.dll</c> process. Corrupted and truncated entries in Redis are misses, replaced, never served.
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

    private static async Task<(HttpStatusCode Status, string? Cache, string Body)> SendAsync(HttpClient client, string body)
    {
        using var response = await client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice));
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

        Assert.Equal(("MISS", "HIT"), (onA.Cache, onB.Cache));
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
        byte[] value = (await database.StringGetAsync(key))!;
        byte[] damaged = damage switch
        {
            "truncate" => value[..(value.Length - 10)],
            "flip" => Flip(value, value.Length - 5),
            _ => "not a cache entry"u8.ToArray(),
        };
        await database.StringSetAsync(key, damaged);

        var afterDamage = await SendAsync(_a.Client, CacheConfigs.Chat("damage " + damage));
        Assert.Equal((HttpStatusCode.OK, "MISS"), (afterDamage.Status, afterDamage.Cache));
        Assert.Equal(first.Body, afterDamage.Body);
        Assert.Equal(2, _mock.Log.CountFor("/v1/chat/completions"));
        Assert.Contains(_a.Logs.All, r => r.EventName == "CacheEntryCorrupt");

        // Replaced by the fresh answer (stored as the call ends, just after its body reached the client): intact again, and served.
        var restored = await Http.EventuallyAsync(async () =>
        {
            byte[]? stored = await database.StringGetAsync(key);
            return stored is not null && !stored.AsSpan().SequenceEqual(damaged) ? (int?)stored.Length : null;
        }, "the entry to be replaced");
        Assert.Equal(value.Length, restored);
        Assert.Equal("HIT", (await SendAsync(_a.Client, CacheConfigs.Chat("damage " + damage))).Cache);
    }

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
