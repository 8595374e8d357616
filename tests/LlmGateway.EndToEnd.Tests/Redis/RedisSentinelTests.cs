using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// A gateway given only a Redis Sentinel (<c>127.0.0.1:port,serviceName=mymaster</c>) finds the primary through it and
/// enforces budgets there: a real <c>redis-server --sentinel</c> on loopback monitoring a real redis-server.
/// </summary>
[RequiresRedisServer]
public sealed class RedisSentinelTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private SentinelProcess _sentinel = null!;
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _sentinel = await SentinelProcess.StartAsync(redis.Port, downAfterMs: 60000);
    }

    public async Task DisposeAsync()
    {
        await _sentinel.DisposeAsync();
        await _mock.DisposeAsync();
    }

    [RedisFact]
    public async Task GatewayGivenASentinel_UsesThePrimaryItNames()
    {
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";
        await using var gateway = await GatewayServer.StartAsync(_sentinel.GatewayConfig(_mock.BaseUrl, prefix, 0.03m));
        await gateway.WaitReadyAsync();

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"via sentinel {i}"));
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        var state = await BudgetCalls.SettledAsync(gateway.Client, "/admin/users/spender");
        Assert.Equal(0.03m, state.GetProperty("spent_usd").GetDecimal());

        // The budget lives on the primary the Sentinel named (the user's control hash, written by every admission).
        Assert.StartsWith(":1", redis.TryCommand($"EXISTS {prefix}{{u:spender}}"), StringComparison.Ordinal);
    }
}
