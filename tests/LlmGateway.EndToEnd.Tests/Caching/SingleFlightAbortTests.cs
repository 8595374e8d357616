using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.DependencyInjection;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>
/// A caller that goes away while its lookup, the first of a key, waits on the shared tier ends its flight: the key is
/// not left "in flight" for good, with every later identical call waiting SingleFlightWait for it and then missing.
/// </summary>
public sealed class SingleFlightAbortTests : IAsyncLifetime
{
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync() => _mock = await MockLlmServer.StartAsync();

    public async Task DisposeAsync() => await _mock.DisposeAsync();

    [Fact]
    public async Task LeaderAbortedDuringItsLookup_TheNextCallsLeadAndHit()
    {
        var shared = new HoldingCache();
        var config = CacheConfigs.Enabled(_mock.BaseUrl, extraCache: ",\"SingleFlightWait\": \"00:00:02\"")
            .Replace("\"Timeout\": \"00:00:00.500\"", "\"Timeout\": \"00:00:30\"", StringComparison.Ordinal);
        await using var gateway = await GatewayServer.StartAsync(config, services: s => s.AddSingleton<IDistributedCache>(shared));
        var body = CacheConfigs.Chat("abandoned");

        using (var abort = new CancellationTokenSource())
        {
            var first = gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice), abort.Token);
            await shared.Holding.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await abort.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first);
        }

        await shared.Released.Task.WaitAsync(TimeSpan.FromSeconds(10)); // the gateway saw the caller go
        var second = await SendAsync(gateway, body);
        var third = await SendAsync(gateway, body);

        Assert.Equal((HttpStatusCode.OK, "MISS"), second);
        Assert.Equal((HttpStatusCode.OK, "HIT"), third); // a call that only waited on a leftover flight never looks up, so never hits
        Assert.Equal(1, _mock.Log.CountFor("/v1/chat/completions"));
    }

    private static async Task<(HttpStatusCode, string?)> SendAsync(GatewayServer gateway, string body)
    {
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice));
        return (response.StatusCode, response.Headers.TryGetValues("X-Gateway-Cache", out var values) ? values.Single() : null);
    }

    /// <summary>A shared tier whose first lookup of a call holds until its caller gives up; afterwards a plain map.</summary>
    private sealed class HoldingCache : IDistributedCache
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte[]> _values = new();
        private int _lookups;

        public TaskCompletionSource Holding { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async Task<byte[]?> GetAsync(string key, CancellationToken token = default)
        {
            // The gateway's start-up lookup (ResponseCacheWarmup) is not held.
            if (key != "warmup" && Interlocked.Increment(ref _lookups) == 1)
            {
                Holding.TrySetResult();
                try
                {
                    await Task.Delay(Timeout.Infinite, token);
                }
                finally
                {
                    Released.TrySetResult();
                }
            }

            return _values.TryGetValue(key, out var value) ? value : null;
        }

        public Task SetAsync(string key, byte[] value, DistributedCacheEntryOptions options, CancellationToken token = default)
        {
            _values[key] = value;
            return Task.CompletedTask;
        }

        public Task RemoveAsync(string key, CancellationToken token = default)
        {
            _values.TryRemove(key, out _);
            return Task.CompletedTask;
        }

        public Task RefreshAsync(string key, CancellationToken token = default) => Task.CompletedTask;

        public byte[]? Get(string key) => throw new NotSupportedException();

        public void Set(string key, byte[] value, DistributedCacheEntryOptions options) => throw new NotSupportedException();

        public void Refresh(string key) => throw new NotSupportedException();

        public void Remove(string key) => throw new NotSupportedException();
    }
}
