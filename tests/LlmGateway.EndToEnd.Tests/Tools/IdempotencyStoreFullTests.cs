using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.Server;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// A full in-memory idempotency store (Gateway:Idempotency:MaxEntries) refuses a new key with a retryable 503
/// store_full and never reaches the tool, even when Gateway:Store:OnUnavailable is Allow; keys it holds keep replaying.
/// </summary>
public sealed class IdempotencyStoreFullTests : IAsyncLifetime
{
    private WireMockServer _tool = null!;
    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _tool = await ToolApi.StartAsync();
        _mock = await MockLlmServer.StartAsync();
        var config = ToolConfigs.Config(_tool.Url!, _mock.BaseUrl)
            .Replace("\"Idempotency\": { \"Ttl\": \"00:10:00\", \"WaitTimeout\": \"00:00:05\" }", "\"Idempotency\": { \"Ttl\": \"00:10:00\", \"WaitTimeout\": \"00:00:05\", \"MaxEntries\": 2 }", StringComparison.Ordinal)
            .Replace("\"Store\": { \"Timeout\": \"00:00:01\",", "\"Store\": { \"OnUnavailable\": \"Allow\", \"Timeout\": \"00:00:01\",", StringComparison.Ordinal);
        Assert.Contains("\"MaxEntries\": 2", config, StringComparison.Ordinal);
        Assert.Contains("\"OnUnavailable\": \"Allow\"", config, StringComparison.Ordinal);
        _gateway = await GatewayServer.StartAsync(config);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }

    [Fact]
    public async Task NewKey_WhenFull_Is503StoreFull_NeverReachesTheTool_AndHeldKeysStillReplay()
    {
        _tool.Given(Request.Create().WithPath("/effects/refunds").UsingPost()).RespondWith(ToolApi.Answer());
        HttpRequestMessage Refund(string key) => ToolConfigs.Request(HttpMethod.Post, "/tools/ledger/refunds", """{"amount":5}""", headers: [("Idempotency-Key", key)]);

        using var first = await _gateway.Client.SendAsync(Refund("refund-1"));
        using var second = await _gateway.Client.SendAsync(Refund("refund-2"));
        using var third = await _gateway.Client.SendAsync(Refund("refund-3"));
        using var repeat = await _gateway.Client.SendAsync(Refund("refund-1"));

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        await Http.AssertErrorAsync(third, 503, "store_full", shouldRetry: true);
        Assert.True(third.Headers.RetryAfter is not null);
        Assert.Equal(HttpStatusCode.OK, repeat.StatusCode);
        Assert.Equal("true", repeat.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(2, _tool.CountFor("/effects/refunds"));
    }
}
