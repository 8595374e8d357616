namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>
/// A fresh mock provider and gateway for every test, for tests that change the gateway's state in ways other
/// tests must not see (its config file, its metric series, its budgets).
/// </summary>
public abstract class GatewayTestBase : IAsyncLifetime
{
    protected MockLlmServer Mock { get; private set; } = null!;

    protected GatewayServer Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Mock = await MockLlmServer.StartAsync();
        Gateway = await GatewayServer.StartAsync(Config(Mock.BaseUrl));
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Mock.DisposeAsync();
    }

    /// <summary>The gateway's config, given the mock's base URL.</summary>
    protected virtual string Config(string mockBaseUrl) => TestConfigs.Default(mockBaseUrl);
}
