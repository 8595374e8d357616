using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>The response cache in memory: keys, cacheability, headers, TTL, scope, single-flight and accounting.</summary>
public sealed class ResponseCacheTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _clock = new();
    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl), _clock);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
    }

    private int UpstreamCalls(string path = "/v1/chat/completions") => _mock.Log.CountFor(path);

    /// <summary>
    /// Makes sure the answer to a call just made is in the cache before a test moves the clock: the gateway stores it,
    /// stamped with the clock's time, as the call completes, just after the caller has it. An identical call waits for
    /// that (single flight), so its HIT proves the entry is in; moving the clock earlier would move the expiry with it.
    /// </summary>
    private async Task StoredAsync(string body, params (string, string)[] headers) =>
        Assert.Equal("HIT", (await SendAsync(body, headers: headers)).Cache);

    private async Task<(HttpStatusCode Status, string? Cache, string Body)> SendAsync(string body, string key = CacheConfigs.Alice, string path = "/v1/chat/completions", params (string, string)[] headers)
    {
        using var response = await _gateway.Client.SendAsync(Http.Post(path, body, key, headers));
        var cache = response.Headers.TryGetValues("X-Gateway-Cache", out var values) ? values.Single() : null;
        return (response.StatusCode, cache, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task DeterministicRequest_MissThenHit_SameAnswerOneUpstreamCall()
    {
        var first = await SendAsync(CacheConfigs.Chat("cache me"));
        var second = await SendAsync(CacheConfigs.Chat("cache me"));

        Assert.Equal((HttpStatusCode.OK, "MISS"), (first.Status, first.Cache));
        Assert.Equal((HttpStatusCode.OK, "HIT"), (second.Status, second.Cache));
        Assert.Equal(first.Body, second.Body);
        Assert.Equal(1, UpstreamCalls());
    }

    [Fact]
    public async Task ReorderedKeysAndWhitespace_Hit()
    {
        await SendAsync("""{"model":"mock-small","temperature":0,"messages":[{"role":"user","content":"order"}],"max_tokens":50}""");

        var reordered = await SendAsync("""
            {  "max_tokens" : 50, "messages": [ { "content": "order", "role": "user" } ],
               "temperature": 0.0, "model": "mock-small", "user": "someone-else", "stream": false }
            """);

        Assert.Equal("HIT", reordered.Cache);
        Assert.Equal(1, UpstreamCalls());
    }

    [Theory]
    [InlineData(",\"seed\":7,\"temperature\":0.5", ",\"seed\":7,\"temperature\":0.7")]
    [InlineData(",\"temperature\":0,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"}}]", ",\"temperature\":0,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"b\"}}]")]
    [InlineData(",\"temperature\":0,\"max_tokens\":5", ",\"temperature\":0,\"max_tokens\":6")]
    public async Task DifferentParameter_Misses(string first, string second)
    {
        Assert.Equal("MISS", (await SendAsync(CacheConfigs.Chat("params", extra: first))).Cache);
        Assert.Equal("MISS", (await SendAsync(CacheConfigs.Chat("params", extra: second))).Cache);
        Assert.Equal(2, UpstreamCalls());
    }

    [Fact]
    public async Task DifferentModel_Misses()
    {
        Assert.Equal("MISS", (await SendAsync(CacheConfigs.Chat("models", model: "mock-small"))).Cache);
        Assert.Equal("MISS", (await SendAsync(CacheConfigs.Chat("models", model: "mock-large"))).Cache);
        Assert.Equal(2, UpstreamCalls());
    }

    [Fact]
    public async Task NonDeterministic_Bypasses_UnlessForced()
    {
        var plain = Http.Chat(content: "creative");
        Assert.Equal("BYPASS", (await SendAsync(plain)).Cache);
        Assert.Equal("BYPASS", (await SendAsync(plain)).Cache);
        Assert.Equal("MISS", (await SendAsync(plain, headers: ("X-Gateway-Cache", "force"))).Cache);
        Assert.Equal("HIT", (await SendAsync(plain, headers: ("X-Gateway-Cache", "force"))).Cache);
        Assert.Equal(3, UpstreamCalls());
    }

    [Fact]
    public async Task NoStore_StoresNothing_NoCache_SkipsLookupButStores()
    {
        Assert.Equal("MISS", (await SendAsync(CacheConfigs.Chat("nostore"), headers: ("X-Gateway-Cache", "no-store"))).Cache);
        Assert.Equal("MISS", (await SendAsync(CacheConfigs.Chat("nostore"))).Cache);
        Assert.Equal(2, UpstreamCalls());

        Assert.Equal("BYPASS", (await SendAsync(CacheConfigs.Chat("nostore"), headers: ("X-Gateway-Cache", "no-cache"))).Cache);
        Assert.Equal(3, UpstreamCalls());
        Assert.Equal("HIT", (await SendAsync(CacheConfigs.Chat("nostore"))).Cache);
        Assert.Equal(3, UpstreamCalls());
    }

    [Fact]
    public async Task BadCacheHeaders_Rejected400()
    {
        using var mode = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", CacheConfigs.Chat("bad"), CacheConfigs.Alice, ("X-Gateway-Cache", "sometimes")));
        await Http.AssertErrorAsync(mode, 400, "invalid_request_error", shouldRetry: false);
        using var ttl = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", CacheConfigs.Chat("bad"), CacheConfigs.Alice, ("X-Gateway-Cache-Ttl", "-5")));
        await Http.AssertErrorAsync(ttl, 400, "invalid_request_error", shouldRetry: false);
        Assert.Equal(0, UpstreamCalls());
    }

    [Fact]
    public async Task Ttl_ExpiresByTheInjectedClock()
    {
        await SendAsync(CacheConfigs.Chat("ttl"));
        await StoredAsync(CacheConfigs.Chat("ttl"));
        _clock.Advance(TimeSpan.FromMinutes(59));
        Assert.Equal("HIT", (await SendAsync(CacheConfigs.Chat("ttl"))).Cache);
        _clock.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal("MISS", (await SendAsync(CacheConfigs.Chat("ttl"))).Cache);
    }

    [Fact]
    public async Task TtlHeader_ShortensTheEntrysLife()
    {
        await SendAsync(CacheConfigs.Chat("short"), headers: ("X-Gateway-Cache-Ttl", "10"));
        await StoredAsync(CacheConfigs.Chat("short"), ("X-Gateway-Cache-Ttl", "10"));
        _clock.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal("HIT", (await SendAsync(CacheConfigs.Chat("short"))).Cache);
        _clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal("MISS", (await SendAsync(CacheConfigs.Chat("short"))).Cache);
    }

    [Fact]
    public async Task UserScope_BobNeverGetsAlicesAnswer()
    {
        await SendAsync(CacheConfigs.Chat("private"), CacheConfigs.Alice);

        var bob = await SendAsync(CacheConfigs.Chat("private"), CacheConfigs.Bob);

        Assert.Equal("MISS", bob.Cache);
        Assert.Equal(2, UpstreamCalls());
        Assert.Equal("HIT", (await SendAsync(CacheConfigs.Chat("private"), CacheConfigs.Bob)).Cache);
    }

    [Fact]
    public async Task Embeddings_AlwaysCached()
    {
        const string body = """{"model":"mock-embed","input":"embed me"}""";
        var first = await SendAsync(body, path: "/v1/embeddings");
        var second = await SendAsync(body, path: "/v1/embeddings");

        Assert.Equal(("MISS", "HIT"), (first.Cache, second.Cache));
        Assert.Equal(first.Body, second.Body);
        Assert.Equal(1, UpstreamCalls("/v1/embeddings"));
    }

    [Fact]
    public async Task TenConcurrentIdenticalMisses_OneUpstreamCall()
    {
        var responses = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ =>
            SendAsync(CacheConfigs.Chat("together"), headers: ("X-Mock-Latency-Ms", "500"))));

        Assert.Equal(1, UpstreamCalls());
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.Single(responses.Select(r => r.Body).Distinct());
        Assert.Equal(1, responses.Count(r => r.Cache == "MISS"));
        Assert.Equal(9, responses.Count(r => r.Cache == "HIT"));
    }

    [Fact]
    public async Task Hit_LeavesRunSpendUnchanged_AndCountsSavedUsd()
    {
        (await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", CacheConfigs.Chat("budget"), CacheConfigs.Alice, ("X-Run-Id", "run-cache-1")))).EnsureSuccessStatusCode();
        var before = await RunAsync("run-cache-1");
        using var hit = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", CacheConfigs.Chat("budget"), CacheConfigs.Alice, ("X-Run-Id", "run-cache-1")));

        Assert.Equal("HIT", hit.Headers.GetValues("X-Gateway-Cache").Single());
        Assert.Equal("0", hit.Headers.GetValues("X-Gateway-Cost-Usd").Single());
        var after = await RunAsync("run-cache-1");
        Assert.True(before.GetProperty("spent_usd").GetDecimal() > 0);
        Assert.Equal(before.GetProperty("spent_usd").GetDecimal(), after.GetProperty("spent_usd").GetDecimal());
        Assert.Equal(before.GetProperty("spent_tokens").GetInt64(), after.GetProperty("spent_tokens").GetInt64());
        Assert.Equal(before.GetProperty("calls").GetInt64() + 1, after.GetProperty("calls").GetInt64());

        var metrics = await _gateway.Client.GetStringAsync("/metrics");
        Assert.Contains("llm_gateway_cache_requests_total{model=\"mock-small\",result=\"hit\"} 1", metrics);
        var saved = metrics.Split('\n').Single(l => l.StartsWith("llm_gateway_cache_saved_usd_total{model=\"mock-small\"}", StringComparison.Ordinal));
        Assert.Equal(before.GetProperty("spent_usd").GetDecimal(), decimal.Parse(saved.Split(' ')[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture));
    }

    // A call is settled just after its answer reached the caller: read the run once nothing is held.
    private Task<JsonElement> RunAsync(string id) => BudgetCalls.SettledAsync(_gateway.Client, "/admin/runs/" + id);
}
