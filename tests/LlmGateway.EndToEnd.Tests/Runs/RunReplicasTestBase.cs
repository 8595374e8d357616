using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.EndToEnd.Tests.Tools;
using LlmGateway.Tests.Shared;
using WireMock.Server;

namespace LlmGateway.EndToEnd.Tests.Runs;

/// <summary>
/// Two gateways on one real redis-server sharing one set of runs: replica A in the test process, replica B a separate
/// process (its LLM and tool call records logged, for their steps), with the mock LLM and a tool API behind them.
/// </summary>
public abstract class RunReplicasTestBase(RedisServerFixture redis, string idleExpiry) : IAsyncLifetime
{
    private MockLlmServer _mock = null!;
    private WireMockServer _tool = null!;

    protected GatewayServer A { get; private set; } = null!;

    protected GatewayProcess B { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        if (!redis.IsRunning)
        {
            redis.Start();
        }

        _mock = await MockLlmServer.StartAsync();
        _tool = await ToolApi.StartAsync();
        var config = RunConfigs.Gateway(_mock.BaseUrl, _tool.Url!, redis.ConnectionString, $"llmgw-{Guid.NewGuid():N}:", idleExpiry);
        A = await GatewayServer.StartAsync(config);
        B = await GatewayProcess.StartAsync(config, new Dictionary<string, string> { ["Logging__LogLevel__LlmGateway"] = "Information" });
        await A.WaitReadyAsync();
    }

    public async Task DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        await _mock.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }
}
