namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>Two gateway replicas in this process on one mock model: started and ready together, disposed together.</summary>
internal sealed class GatewayPair : IAsyncDisposable
{
    private GatewayPair(MockLlmServer mock, GatewayServer a, GatewayServer b)
    {
        Mock = mock;
        A = a;
        B = b;
    }

    public MockLlmServer Mock { get; }

    public GatewayServer A { get; }

    public GatewayServer B { get; }

    /// <summary>Both replicas with one configuration, given the mock (its base URL).</summary>
    public static Task<GatewayPair> StartAsync(Func<MockLlmServer, string> config) =>
        StartAsync(mock =>
        {
            var both = config(mock);
            return (both, both);
        });

    /// <summary>Each replica with its own configuration, given the mock.</summary>
    public static async Task<GatewayPair> StartAsync(Func<MockLlmServer, (string A, string B)> configs)
    {
        var mock = await MockLlmServer.StartAsync();
        GatewayServer? a = null;
        try
        {
            var (configA, configB) = configs(mock);
            a = await GatewayServer.StartAsync(configA);
            var b = await GatewayServer.StartAsync(configB);
            await a.WaitReadyAsync();
            await b.WaitReadyAsync();
            return new GatewayPair(mock, a, b);
        }
        catch
        {
            if (a is not null)
            {
                await a.DisposeAsync();
            }

            await mock.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        await Mock.DisposeAsync();
    }
}
