using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using WireMock.Server;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>In-run caching of tool reads end to end: a real gateway on Kestrel and a tool API (WireMock.Net) on loopback.</summary>
public sealed class RunCacheTests : IAsyncLifetime
{
    private WireMockServer _tool = null!;
    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _tool = await ToolApi.StartAsync();
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(ApprovalConfigs.Config(_tool.Url!, _mock.BaseUrl));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }

    [Fact]
    public async Task ThreeIdenticalGets_ReachTheToolOnce_APostInBetweenMakesTheNextGetReachItAgain_AndAnotherRunIsNeverServedFromThisOne()
    {
        var first = await GetAsync("run-cache-a");
        var second = await GetAsync("run-cache-a");
        var third = await GetAsync("run-cache-a");

        Assert.Equal("MISS", first.Cache);
        Assert.Equal("HIT", second.Cache);
        Assert.Equal("HIT", third.Cache);
        Assert.Equal(first.Body, second.Body);
        Assert.Equal(first.Body, third.Body);
        Assert.Equal(1, Reads());

        var otherRun = await GetAsync("run-cache-b");
        var otherQuery = await GetAsync("run-cache-a", "?fields=price");
        var noRun = await GetAsync(null);
        Assert.Equal("MISS", otherRun.Cache);
        Assert.NotEqual(first.Body, otherRun.Body);
        Assert.Equal("MISS", otherQuery.Cache);
        Assert.Null(noRun.Cache);
        Assert.Equal(4, Reads());

        using (var write = await _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/catalog/products/42/price", """{"price":10}""", run: "run-cache-a")))
        {
            Assert.Equal(HttpStatusCode.OK, write.StatusCode);
        }

        var afterWrite = await GetAsync("run-cache-a");
        var otherRunAfterWrite = await GetAsync("run-cache-b");
        Assert.Equal("MISS", afterWrite.Cache);
        Assert.NotEqual(first.Body, afterWrite.Body);
        Assert.Equal("HIT", otherRunAfterWrite.Cache);
        Assert.Equal(5, Reads());

        // Counted as they were answered: three hits, four misses (the read outside a run is no lookup).
        var metrics = await _gateway.Client.GetStringAsync("/metrics");
        Assert.Contains("llm_gateway_tool_run_cache_total{result=\"hit\",tool=\"catalog\"} 3", metrics, StringComparison.Ordinal);
        Assert.Contains("llm_gateway_tool_run_cache_total{result=\"miss\",tool=\"catalog\"} 4", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Hits_CountAgainstTheRunsCalls_UnlessCountHitsIsFalse()
    {
        await using var notCounting = await GatewayServer.StartAsync(ApprovalConfigs.Config(_tool.Url!, _mock.BaseUrl, countHits: "false"));
        for (var i = 0; i < 8; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await GetAsync("run-count", client: _gateway.Client)).Status);
            Assert.Equal(HttpStatusCode.OK, (await GetAsync("run-count", client: notCounting.Client)).Status);
        }

        using var ninthCounted = await _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Get, "/tools/catalog/products/42", run: "run-count"));
        var ninthNotCounted = await GetAsync("run-count", client: notCounting.Client);

        await Http.AssertErrorAsync(ninthCounted, 429, "budget_exceeded", shouldRetry: false);
        Assert.Equal(HttpStatusCode.OK, ninthNotCounted.Status);
        Assert.Equal("HIT", ninthNotCounted.Cache);
    }

    /// <summary>GETs that reached the tool.</summary>
    private int Reads() => _tool.Requests().Count(r => r.Method == "GET");

    private async Task<(HttpStatusCode Status, string? Cache, string Body)> GetAsync(string? run, string query = "", HttpClient? client = null)
    {
        using var response = await (client ?? _gateway.Client).SendAsync(ApprovalConfigs.Call(HttpMethod.Get, "/tools/catalog/products/42" + query, run: run));
        return (response.StatusCode, response.Headers.TryGetValues("X-Gateway-Cache", out var values) ? values.Single() : null, await response.Content.ReadAsStringAsync());
    }
}
