using System.Collections.Concurrent;
using System.Net;
using LlmGateway.Caching;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.DependencyInjection;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>
/// The response cache's shared tier is whatever <see cref="IDistributedCache"/> the application registers: two
/// gateways without Redis share answers through one the test registers in both.
/// </summary>
public sealed class DistributedCacheTierTests : IAsyncLifetime
{
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync() => _mock = await MockLlmServer.StartAsync();

    public async Task DisposeAsync() => await _mock.DisposeAsync();

    private static async Task<(HttpStatusCode Status, string? Cache, string Body)> SendAsync(GatewayServer gateway, string body)
    {
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice));
        var cache = response.Headers.TryGetValues("X-Gateway-Cache", out var values) ? values.Single() : null;
        return (response.StatusCode, cache, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task TheApplicationsDistributedCache_IsTheSharedTier()
    {
        var shared = new DictionaryCache();
        var config = CacheConfigs.Enabled(_mock.BaseUrl);
        await using var a = await GatewayServer.StartAsync(config, services: s => s.AddSingleton<IDistributedCache>(shared));
        await using var b = await GatewayServer.StartAsync(config, services: s => s.AddSingleton<IDistributedCache>(shared));

        var onA = await SendAsync(a, CacheConfigs.Chat("shared without redis"));
        // A stores the answer as its call ends, just after the body reached the client.
        await Http.EventuallyAsync(() => shared.Values.IsEmpty ? null : "stored", "the entry in the application's cache");
        var onB = await SendAsync(b, CacheConfigs.Chat("shared without redis"));

        Assert.Same(shared, b.Services.GetRequiredService<ResponseCacheStore>().Shared);
        Assert.Equal(("MISS", "HIT"), (onA.Cache, onB.Cache));
        Assert.Equal(onA.Body, onB.Body);
        Assert.Equal(1, _mock.Log.CountFor("/v1/chat/completions"));
        var options = Assert.Single(shared.Options.Values);
        // The configured TTL (1 h) less the moments between the answer's creation and its store.
        Assert.InRange(options.AbsoluteExpirationRelativeToNow!.Value, TimeSpan.FromMinutes(59), TimeSpan.FromHours(1));
    }

    [Fact]
    public async Task WithoutRedis_OrACacheOfTheApplications_AnswersStayInTheMemoryTier()
    {
        await using var gateway = await GatewayServer.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl));

        await SendAsync(gateway, CacheConfigs.Chat("memory only"));

        Assert.IsType<MemoryDistributedCache>(gateway.Services.GetRequiredService<IDistributedCache>());
        Assert.Null(gateway.Services.GetRequiredService<ResponseCacheStore>().Shared);
        Assert.Equal("HIT", (await SendAsync(gateway, CacheConfigs.Chat("memory only"))).Cache);
    }

    /// <summary>An application's own IDistributedCache: keeps values in a map, with the options they came with.</summary>
    private sealed class DictionaryCache : IDistributedCache
    {
        public ConcurrentDictionary<string, byte[]> Values { get; } = new(StringComparer.Ordinal);

        public ConcurrentDictionary<string, DistributedCacheEntryOptions> Options { get; } = new(StringComparer.Ordinal);

        public byte[]? Get(string key) => Values.TryGetValue(key, out var value) ? value : null;

        public Task<byte[]?> GetAsync(string key, CancellationToken token = default) => Task.FromResult(Get(key));

        public void Set(string key, byte[] value, DistributedCacheEntryOptions options)
        {
            Values[key] = value;
            Options[key] = options;
        }

        public Task SetAsync(string key, byte[] value, DistributedCacheEntryOptions options, CancellationToken token = default)
        {
            Set(key, value, options);
            return Task.CompletedTask;
        }

        public void Refresh(string key)
        {
        }

        public Task RefreshAsync(string key, CancellationToken token = default) => Task.CompletedTask;

        public void Remove(string key)
        {
            Values.TryRemove(key, out _);
            Options.TryRemove(key, out _);
        }

        public Task RemoveAsync(string key, CancellationToken token = default)
        {
            Remove(key);
            return Task.CompletedTask;
        }
    }
}
