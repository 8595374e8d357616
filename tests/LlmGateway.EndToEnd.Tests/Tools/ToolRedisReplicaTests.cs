using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using WireMock.RequestBuilders;
using WireMock.Server;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// Two gateways sharing only a real redis-server (replica A in this process, replica B a separate
/// <c>dotnet LlmGateway.dll</c> process) execute a repeated idempotency key once between them at the tool (WireMock.Net).
/// </summary>
[RequiresRedisServer]
public sealed class ToolRedisReplicaTests : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly RedisServerFixture _redis;
    private WireMockServer _tool = null!;
    private MockLlmServer _mock = null!;
    private GatewayServer _a = null!;
    private GatewayProcess _b = null!;

    public ToolRedisReplicaTests(RedisServerFixture redis) => _redis = redis;

    public async Task InitializeAsync()
    {
        if (!_redis.IsRunning)
        {
            _redis.Start();
        }

        _tool = await ToolApi.StartAsync();
        _mock = await MockLlmServer.StartAsync();
        var config = ToolConfigs.Config(_tool.Url!, _mock.BaseUrl, _redis.ConnectionString, "llmgw-tools-" + Guid.NewGuid().ToString("N") + ":");
        _a = await GatewayServer.StartAsync(config);
        _b = await GatewayProcess.StartAsync(config);
        await _a.WaitReadyAsync();
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        await _mock.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }

    [RedisFact]
    public async Task TwoReplicas_SameIdempotencyKey_ConcurrentlyAndLater_ReachTheToolOnce()
    {
        // The tool takes 300 ms, so the concurrent calls arrive while the first is still in flight.
        _tool.Given(Request.Create().WithPath("/effects/refunds").UsingPost()).RespondWith(ToolApi.Answer().WithDelay(300));
        HttpRequestMessage Refund() => ToolConfigs.Request(HttpMethod.Post, "/tools/ledger/refunds", """{"amount":5}""", headers: [("Idempotency-Key", "shared-refund")]);

        var concurrent = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => (i % 2 == 0 ? _a.Client : _b.Client).SendAsync(Refund())));
        using var laterOnB = await _b.Client.SendAsync(Refund());
        var all = concurrent.Append(laterOnB).ToArray();

        Assert.All(all, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var bodies = await Task.WhenAll(all.Select(r => r.Content.ReadAsStringAsync()));
        Assert.Single(bodies.Distinct());
        Assert.Equal(1, _tool.CountFor("/effects/refunds"));
        Assert.Equal(4, all.Count(r => r.Headers.Contains("Idempotent-Replayed")));

        using var reused = await _a.Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/ledger/refunds", """{"amount":6}""", headers: [("Idempotency-Key", "shared-refund")]));
        await Http.AssertErrorAsync(reused, 422, "idempotency_key_reused", shouldRetry: false);
        foreach (var response in all)
        {
            response.Dispose();
        }
    }
}
